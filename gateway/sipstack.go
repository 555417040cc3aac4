package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"callgate/gateway/config"
	"callgate/sip/connlimit"
	"callgate/sip/location"
	"callgate/sip/registrar"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// sipStack owns the SIP sockets, sipgo's user agent, server and client, and
// the admission rules that apply to every request.
type sipStack struct {
	log       *slog.Logger
	ua        *sipgo.UserAgent
	srv       *sipgo.Server
	client    *sipgo.Client
	udp       map[string]net.PacketConn // by local address
	tcp       []net.Listener
	conns     *connlimit.Limiter // per-IP cap and idle timeout of SIP TCP connections
	listens   []config.ListenAddr
	locals    map[string]netip.AddrPort // transport -> first listener
	advertise string                    // IP written into Via/Contact
	phones    []netip.Prefix
	upstream  []netip.Prefix
	up        chan struct{} // closed once every listener serves

	// screen reports requests to drop unanswered (banned source, scanner).
	screen func(*sip.Request, netip.AddrPort) bool
	// panics counts handler panics recovered (see guardHandler).
	panics atomic.Uint64
}

func newSIPStack(cfg *config.Config, reg *registrar.Registrar, log *slog.Logger) (*sipStack, error) {
	s := &sipStack{log: log, udp: map[string]net.PacketConn{}, locals: map[string]netip.AddrPort{}, up: make(chan struct{}), screen: reg.Screen}
	for _, c := range cfg.SIP.AllowNetworks {
		s.phones = append(s.phones, netip.MustParsePrefix(c))
	}
	for _, c := range cfg.Upstream.TrustedSources {
		s.upstream = append(s.upstream, netip.MustParsePrefix(c))
	}
	for _, l := range cfg.SIP.Listen {
		la, _ := config.ParseListen(l) // validated
		s.listens = append(s.listens, la)
	}
	s.conns = newSIPConnLimiter(cfg, log)
	// Bind every socket first so that a busy port fails start-up at once.
	for _, la := range s.listens {
		switch la.Transport {
		case "udp":
			pc, err := net.ListenPacket("udp", la.Addr.String())
			if err != nil {
				s.closeSockets()
				return nil, fmt.Errorf("listen %s: %w", la, err)
			}
			s.udp[pc.LocalAddr().String()] = pc
			if _, ok := s.locals["udp"]; !ok {
				s.locals["udp"] = netip.MustParseAddrPort(pc.LocalAddr().String())
			}
		case "tcp":
			ln, err := net.Listen("tcp", la.Addr.String())
			if err != nil {
				s.closeSockets()
				return nil, fmt.Errorf("listen %s: %w", la, err)
			}
			ln = s.conns.Listener(ln, nil)
			s.tcp = append(s.tcp, ln)
			if _, ok := s.locals["tcp"]; !ok {
				s.locals["tcp"] = netip.MustParseAddrPort(ln.Addr().String())
			}
		}
	}
	s.advertise = advertiseAddr(cfg, s.listens)

	filter := s.guardFilter(reg.UDPFilter(func(local string) net.PacketConn { return s.udp[local] }))
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent(cfg.SIP.UserAgent),
		sipgo.WithUserAgentHostname(s.advertise),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerReadFilter(filter)),
	)
	if err != nil {
		s.closeSockets()
		return nil, err
	}
	s.ua = ua
	sipLog := log.With("component", "sipgo")
	s.srv, err = sipgo.NewServer(ua, sipgo.WithServerLogger(sipLog))
	if err != nil {
		s.closeSockets()
		return nil, err
	}
	port := 5060
	if p, ok := s.locals["udp"]; ok {
		port = int(p.Port())
	} else if p, ok := s.locals["tcp"]; ok {
		port = int(p.Port())
	}
	s.client, err = sipgo.NewClient(ua, sipgo.WithClientHostname(s.advertise), sipgo.WithClientPort(port), sipgo.WithClientLogger(sipLog))
	if err != nil {
		s.closeSockets()
		return nil, err
	}
	s.srv.OnRegister(s.admit(false, reg.Handler(s.locals)))
	s.srv.OnOptions(s.admit(true, func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	}))
	s.srv.OnNoRoute(s.admit(true, func(req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, sip.StatusMethodNotAllowed, "Method Not Allowed", nil)
		res.AppendHeader(sip.NewHeader("Allow", "REGISTER, OPTIONS"))
		_ = tx.Respond(res)
	}))
	return s, nil
}

// advertiseAddr picks the IP written into Via and Contact.
func advertiseAddr(cfg *config.Config, listens []config.ListenAddr) string {
	if cfg.SIP.Advertise != "" {
		return cfg.SIP.Advertise
	}
	for _, l := range listens {
		if !l.Addr.Addr().IsUnspecified() {
			return l.Addr.Addr().String()
		}
	}
	// A wildcard listener: ask the kernel which interface routes to the VPBX
	// (a UDP "connect" sends nothing).
	if cfg.Upstream.Registrar != "" {
		if la, err := config.ParseListen(cfg.Upstream.Registrar); err == nil {
			if c, err := net.Dial("udp", la.Addr.String()); err == nil {
				defer c.Close()
				return c.LocalAddr().(*net.UDPAddr).IP.String()
			}
		}
	}
	return "127.0.0.1"
}

// admit wraps a handler so that only phones' networks (and, when upstream
// is true, the VPBX's trusted sources) get an answer; anything else is
// dropped without a word, as a scanner deserves. Banned IP:port sources and
// scanner user agents get no answer from anyone.
func (s *sipStack) admit(upstream bool, h sipgo.RequestHandler) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		src, err := netip.ParseAddrPort(req.Source())
		if err != nil {
			return
		}
		ip := src.Addr().Unmap()
		if s.screen != nil && s.screen(req, src) {
			return
		}
		if contains(s.phones, ip) || (upstream && contains(s.upstream, ip)) {
			s.guardHandler(h)(req, tx)
			return
		}
		s.log.Debug("request from an unknown network dropped", "method", string(req.Method), "source", src.String())
	}
}

func contains(list []netip.Prefix, ip netip.Addr) bool {
	for _, p := range list {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// serve starts every listener and returns once sipgo holds them all.
func (s *sipStack) serve() error {
	for _, pc := range s.udp {
		go s.srv.ServeUDP(pc)
	}
	for _, ln := range s.tcp {
		go s.srv.ServeTCP(ln)
	}
	s.conns.Start()
	for local := range s.udp {
		if err := waitPool(s.ua, "udp", local); err != nil {
			return err
		}
	}
	close(s.up)
	return nil
}

// waitPool waits until sipgo has put a UDP listener in its connection pool,
// so that requests can be sent from it.
func waitPool(ua *sipgo.UserAgent, network, addr string) error {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if c, _ := ua.TransportLayer().GetConnection(network, addr); c != nil {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("sip listener %s %s did not start", network, addr)
}

func (s *sipStack) listening() bool {
	select {
	case <-s.up:
		return true
	default:
		return false
	}
}

func (s *sipStack) closeSockets() {
	for _, pc := range s.udp {
		pc.Close()
	}
	for _, ln := range s.tcp {
		ln.Close()
	}
}

func (s *sipStack) close() {
	s.conns.Stop()
	s.closeSockets()
	if s.ua != nil {
		s.ua.Close()
	}
}

// send sends a request and waits for its final response. Over UDP it goes
// out from our listening socket (local, or the first UDP listener), so that
// NAT bindings and the peers' idea of our address stay right; over TCP an
// existing connection to the destination is reused.
func (s *sipStack) send(ctx context.Context, req *sip.Request, local string) (*sip.Response, error) {
	if strings.EqualFold(req.Transport(), "udp") {
		if local == "" {
			local = s.locals["udp"].String()
		}
		host, port, err := sip.ParseAddr(local)
		if err != nil {
			return nil, err
		}
		req.Laddr = sip.Addr{IP: net.ParseIP(host), Port: port}
	}
	return s.client.Do(ctx, req)
}

// contactHostPort is our address for Contact headers on a transport.
func (s *sipStack) contactHostPort(transport string) string {
	p := s.locals[transport]
	return net.JoinHostPort(s.advertise, fmt.Sprint(p.Port()))
}

// transportContacts are callgate's Contacts for transports other than
// UDP, each naming its own listener with the transport parameter.
func (s *sipStack) transportContacts() map[string]sip.ContactHeader {
	out := map[string]sip.ContactHeader{}
	if _, ok := s.locals["tcp"]; ok {
		host, port, _ := sip.ParseAddr(s.contactHostPort("tcp"))
		params := sip.NewParams()
		params.Add("transport", "tcp")
		out["tcp"] = sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "callgate", Host: host, Port: port, UriParams: params}}
	}
	return out
}

// keepalive sends OPTIONS to every registered device at the address it
// registered from, concurrently but bounded, and reports how many answered.
func (s *sipStack) keepalive(ctx context.Context, bindings []location.Binding, timeout time.Duration) (ok int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, b := range bindings {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ok
		}
		wg.Add(1)
		go func(b location.Binding) {
			defer wg.Done()
			defer func() { <-sem }()
			var uri sip.Uri
			if err := sip.ParseUri(b.Contact, &uri); err != nil {
				return
			}
			req := sip.NewRequest(sip.OPTIONS, uri)
			req.SetTransport(strings.ToUpper(b.Transport))
			req.SetDestination(b.Source)
			req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: b.AOR, Host: uri.Host}})
			req.AppendHeader(sip.NewHeader("Content-Length", "0"))
			tctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			res, err := s.send(tctx, req, b.Local)
			if err != nil {
				s.log.Debug("keepalive unanswered", "aor", b.AOR, "source", b.Source, "error", err)
				return
			}
			if res.StatusCode < 500 { // any answer means the device is there
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}(b)
	}
	wg.Wait()
	return ok
}
