// Package sipstack is callgate's SIP transport: it binds the SIP sockets,
// runs sipgo's server and client on them, and puts the admission rules in
// front of every request (phones' networks, the VPBX's trusted sources,
// bans and scanners, sanity checks). The parts that speak SIP (registrar,
// B2BUA, trunk, keepalive) send and receive through it.
package sipstack

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"callgate/gateway/config"
	"callgate/sip/connlimit"
	"callgate/sip/location"
	"callgate/sip/registrar"
	"callgate/sip/sipnet"
	"callgate/sip/sipws"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Stack owns the SIP sockets, sipgo's user agent, server and client, and
// the admission rules that apply to every request.
type Stack struct {
	log       *slog.Logger
	ua        *sipgo.UserAgent
	srv       *sipgo.Server
	client    *sipgo.Client
	packets   map[string]net.PacketConn // datagram sockets by local address
	streams   []stream                  // stream listeners
	conns     *connlimit.Limiter        // per-IP cap and idle timeout of SIP stream connections
	ws        *sipws.Entry              // SIP over WebSocket from the HTTP listener's /sip (nil without HTTP)
	wsConns   *connlimit.Limiter        // the same limits for WebSocket connections
	loc       *location.Table           // registrations, for the metrics by transport
	listens   []config.ListenAddr
	locals    map[sipnet.Transport]netip.AddrPort // first listener of each transport
	advertise string                              // IP written into Via/Contact
	phones    sipnet.Networks
	upstream  *sipnet.NetworkSet // the VPBX's, kept current from DNS by gateway/upstream
	up        chan struct{}      // closed once every listener serves

	// screen reports requests to drop unanswered (banned source, scanner).
	screen func(*sip.Request, netip.AddrPort) bool
	// panics counts handler panics recovered (see guardHandler).
	panics atomic.Uint64
	// reloaded replaces phones once a reload set sip.allow_networks.
	reloaded atomic.Pointer[sipnet.Networks]
}

// New binds every SIP socket of the configuration (failing at once if a
// port is taken) and sets up sipgo on them, with REGISTER going to reg;
// nothing is served until Serve.
func New(cfg *config.Config, reg *registrar.Registrar, log *slog.Logger) (*Stack, error) {
	s := &Stack{log: log, packets: map[string]net.PacketConn{}, locals: map[sipnet.Transport]netip.AddrPort{}, up: make(chan struct{}), screen: reg.Screen,
		phones: cfg.SIP.AllowNetworks.Prefixes(), upstream: sipnet.NewNetworkSet(cfg.Upstream.TrustedSources.Prefixes()), listens: cfg.SIP.Listen}
	s.conns = newConnLimiter(cfg, log, "sip-tcp")
	s.wsConns = newConnLimiter(cfg, log, "sip-ws")
	// Bind every socket first so that a busy port fails start-up at once.
	for _, la := range s.listens {
		local, err := s.bind(la)
		if err != nil {
			s.closeSockets()
			return nil, fmt.Errorf("listen %s: %w", la, err)
		}
		if _, ok := s.locals[la.Transport]; !ok {
			s.locals[la.Transport] = local
		}
	}
	s.advertise = advertiseAddr(cfg, s.listens)

	filter := s.guardFilter(reg.UDPFilter(func(local string) net.PacketConn { return s.packets[local] }))
	// The library's records (parse errors on TCP and WebSocket, for one)
	// go through callgate's log, without the raw messages and throttled.
	sipLog := libraryLog(log)
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent(cfg.SIP.UserAgent),
		sipgo.WithUserAgentHostname(s.advertise),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerReadFilter(filter), sip.WithTransportLayerLogger(sipLog)),
	)
	if err != nil {
		s.closeSockets()
		return nil, fmt.Errorf("sip user agent: %w", err)
	}
	s.ua = ua
	s.srv, err = sipgo.NewServer(ua, sipgo.WithServerLogger(sipLog))
	if err != nil {
		s.closeSockets()
		return nil, fmt.Errorf("sip server: %w", err)
	}
	port := 5060
	for _, tr := range sipnet.Transports() {
		if p, ok := s.locals[tr]; ok {
			port = int(p.Port())
			break
		}
	}
	s.client, err = sipgo.NewClient(ua, sipgo.WithClientHostname(s.advertise), sipgo.WithClientPort(port), sipgo.WithClientLogger(sipLog))
	if err != nil {
		s.closeSockets()
		return nil, fmt.Errorf("sip client: %w", err)
	}
	s.srv.OnRegister(s.Admit(false, reg.Handler(s.locals)))
	s.srv.OnOptions(s.Admit(true, func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	}))
	s.srv.OnNoRoute(s.Admit(true, func(req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, sip.StatusMethodNotAllowed, "Method Not Allowed", nil)
		res.AppendHeader(sip.NewHeader("Allow", "REGISTER, OPTIONS"))
		_ = tx.Respond(res)
	}))
	return s, nil
}

// stream is a bound listener of a stream transport.
type stream struct {
	transport sipnet.Transport
	ln        net.Listener
}

// udpReadBuffer is the receive buffer asked for SIP over UDP.
const udpReadBuffer = 4 << 20

// bind opens the socket of one listen address, as its transport says.
func (s *Stack) bind(la config.ListenAddr) (netip.AddrPort, error) {
	tr := la.Transport
	if tr.Datagram() {
		pc, err := net.ListenPacket(tr.Network(), la.Addr.String())
		if err != nil {
			return netip.AddrPort{}, err
		}
		if u, ok := pc.(*net.UDPConn); ok {
			// A registration storm (every phone after a power cut) arrives
			// faster than one reader drains it for a moment; the default
			// 208 KiB holds about 100 REGISTERs. The kernel caps this at
			// net.core.rmem_max.
			_ = u.SetReadBuffer(udpReadBuffer)
		}
		s.packets[pc.LocalAddr().String()] = pc
		return netip.MustParseAddrPort(pc.LocalAddr().String()), nil
	}
	ln, err := net.Listen(tr.Network(), la.Addr.String())
	if err != nil {
		return netip.AddrPort{}, err
	}
	ln = s.conns.Listener(ln, nil)
	s.streams = append(s.streams, stream{transport: tr, ln: ln})
	return netip.MustParseAddrPort(ln.Addr().String()), nil
}

// advertiseAddr picks the IP written into Via and Contact.
func advertiseAddr(cfg *config.Config, listens []config.ListenAddr) string {
	if cfg.SIP.Advertise.IsSet() {
		return cfg.SIP.Advertise.Addr.String()
	}
	for _, l := range listens {
		if !l.Addr.Addr().IsUnspecified() {
			return l.Addr.Addr().String()
		}
	}
	// A wildcard listener: ask the kernel which interface routes to the VPBX
	// (a UDP "connect" sends nothing). A VPBX known by name is on the
	// internet: the interface of the default route, found the same way
	// with an address that is never used (TEST-NET-1, RFC 5737).
	if r := cfg.Upstream.Registrar; r.IsSet() {
		to := "192.0.2.1:5060"
		if r.IP.IsValid() {
			to = netip.AddrPortFrom(r.IP, cmp.Or(r.Port, 5060)).String()
		}
		if c, err := net.Dial("udp", to); err == nil {
			defer c.Close()
			return c.LocalAddr().(*net.UDPAddr).IP.String()
		}
	}
	return "127.0.0.1"
}

// Admit wraps a handler so that only phones' networks (and, when upstream
// is true, the VPBX's trusted sources) get an answer; anything else is
// dropped without a word, as a scanner deserves. Banned IP:port sources and
// scanner user agents get no answer from anyone.
func (s *Stack) Admit(upstream bool, h sipgo.RequestHandler) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		src, err := netip.ParseAddrPort(req.Source())
		if err != nil {
			return
		}
		if s.screen != nil && s.screen(req, src) {
			return
		}
		if ip := src.Addr(); s.phoneNetworks().Contains(ip) || (upstream && s.upstream.Contains(ip)) {
			s.guardHandler(h)(req, tx)
			return
		}
		s.log.Debug("request from an unknown network dropped", "method", string(req.Method), "source", src.String())
	}
}

// Serve starts every listener and returns once sipgo holds them all.
func (s *Stack) Serve() error {
	for _, pc := range s.packets {
		go s.srv.ServeUDP(pc)
	}
	for _, st := range s.streams {
		go func() {
			if err := st.transport.Serve(s.srv, st.ln); err != nil && !errors.Is(err, net.ErrClosed) {
				s.log.Debug("sip listener stopped", "transport", string(st.transport), "error", err)
			}
		}()
	}
	s.conns.Start()
	s.serveWS()
	for local := range s.packets {
		if err := waitPool(s.ua, string(sipnet.UDP), local); err != nil {
			return err
		}
	}
	close(s.up)
	return nil
}

// waitPool waits until sipgo has put a datagram socket in its connection pool,
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

// Listening reports whether every listener serves.
func (s *Stack) Listening() bool {
	return s.Ready() == nil
}

// Ready reports whether every listener serves, for /readyz.
func (s *Stack) Ready() error {
	select {
	case <-s.up:
		return nil
	default:
		return errors.New("listeners not up")
	}
}

func (s *Stack) closeSockets() {
	for _, pc := range s.packets {
		pc.Close()
	}
	for _, st := range s.streams {
		st.ln.Close()
	}
}

// Close stops the listeners and closes every socket and connection.
func (s *Stack) Close() {
	s.conns.Stop()
	s.closeWS()
	s.closeSockets()
	if s.ua != nil {
		s.ua.Close()
	}
}

// Send sends a request and waits for its final response. Over UDP it goes
// out from our listening socket (local, or the first UDP listener), so that
// NAT bindings and the peers' idea of our address stay right; over TCP an
// existing connection to the destination is reused.
func (s *Stack) Send(ctx context.Context, req *sip.Request, local string) (*sip.Response, error) {
	if local == "" {
		local = s.locals[sipnet.UDP].String()
	}
	if err := sipnet.SendFrom(req, local); err != nil {
		return nil, err
	}
	return s.client.Do(ctx, req)
}

// ContactHostPort is our address for Contact headers on a transport.
func (s *Stack) ContactHostPort(transport sipnet.Transport) string {
	p := s.locals[transport]
	return net.JoinHostPort(s.advertise, fmt.Sprint(p.Port()))
}

// Contact is callgate's Contact for a transport it listens on, naming
// that transport's listener (with the transport parameter where a URI
// without one would mean UDP).
func (s *Stack) Contact(transport sipnet.Transport) (sip.ContactHeader, bool) {
	p, ok := s.locals[transport]
	if !ok {
		return sip.ContactHeader{}, false
	}
	uri := sip.Uri{Scheme: "sip", User: "callgate", Host: s.advertise, Port: int(p.Port())}
	if param := transport.URIParam(); param != "" {
		uri.UriParams = sip.NewParams()
		uri.UriParams.Add("transport", param)
	}
	return sip.ContactHeader{Address: uri}, true
}

// PrimaryContact is callgate's Contact on the first transport of the
// table it listens on (UDP when it does): the one for dialogs whose
// transport has no Contact of its own.
func (s *Stack) PrimaryContact() sip.ContactHeader {
	for _, tr := range sipnet.Transports() {
		if c, ok := s.Contact(tr); ok {
			return c
		}
	}
	return sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "callgate", Host: s.advertise, Port: 5060}}
}

// TransportContacts are callgate's Contacts for the transports whose URIs
// carry a transport parameter (all but UDP).
func (s *Stack) TransportContacts() map[sipnet.Transport]sip.ContactHeader {
	out := map[sipnet.Transport]sip.ContactHeader{}
	for tr := range s.locals {
		if c, ok := s.Contact(tr); ok && tr.URIParam() != "" {
			out[tr] = c
		}
	}
	return out
}

// SendOptions implements location.OptionsSender: an OPTIONS to a
// registered device at the address it registered from, over its
// transport and from the listener it registered on.
func (s *Stack) SendOptions(ctx context.Context, b location.Binding) (int, error) {
	var uri sip.Uri
	if err := sip.ParseUri(b.Contact, &uri); err != nil {
		return 0, fmt.Errorf("contact %q: %w", b.Contact, err)
	}
	req := sip.NewRequest(sip.OPTIONS, uri)
	req.SetTransport(b.Transport.Via())
	req.SetDestination(b.Source)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: b.AOR, Host: uri.Host}})
	req.AppendHeader(sip.NewHeader("Content-Length", "0"))
	res, err := s.Send(ctx, req, b.Local)
	if err != nil {
		return 0, err
	}
	return res.StatusCode, nil
}

// Server is sipgo's server, for the B2BUA to install its handlers on
// (wrapped by Admit).
func (s *Stack) Server() *sipgo.Server { return s.srv }

// Client is sipgo's client, bound to the stack's sockets.
func (s *Stack) Client() *sipgo.Client { return s.client }

// Advertise is the IP written into Via and Contact.
func (s *Stack) Advertise() string { return s.advertise }

// Local is the first listener of a transport.
func (s *Stack) Local(transport sipnet.Transport) (netip.AddrPort, bool) {
	a, ok := s.locals[transport]
	return a, ok
}

// Trusted are the VPBX's source networks (upstream.trusted_sources): the
// networks written there and the current addresses of the names written
// there, which gateway/upstream keeps up to date.
func (s *Stack) Trusted() *sipnet.NetworkSet { return s.upstream }
