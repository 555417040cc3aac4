// Package siptest provides SIP test doubles built on sipgo, the way
// net/http/httptest sits beside net/http: a Phone that registers with
// digest, receives and places calls and transfers them, and a VPBX stand-in
// for Mango Office that challenges registrations and plays the outside
// party. Everything runs on real sockets; tests wait on the channels they
// expose, never on fixed sleeps.
package siptest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/gobwas/ws"
)

// PhoneConfig describes a test phone.
type PhoneConfig struct {
	User      string // extension, also the digest user
	Password  string
	Transport string // "udp" (default), "tcp" or "ws" (a browser's SIP over WebSocket)
	Server    string // registrar/proxy IP:port (callgate; its HTTP listener for "ws")
	// Origin is the Origin header of a "ws" phone's upgrade ("": none, as
	// a SIP stack that is not a browser).
	Origin string
	Domain string // host part of the AOR; default Server's host
	Listen string // our IP:port; default 127.0.0.1:0
	// ContactHost, when set, is advertised in Contact instead of the real
	// address (a phone behind NAT that only knows its private address).
	ContactHost string
	UserAgent   string
	Logger      *slog.Logger
}

// Phone is a SIP phone for tests.
type Phone struct {
	cfg    PhoneConfig
	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client
	addr   string // actual listen IP:port
	pc     net.PacketConn
	ln     net.Listener
	// ctx ends when the phone is closed; background work (KeepRegistered)
	// stops with it.
	ctx    context.Context
	cancel context.CancelFunc

	contact sip.ContactHeader
	dsc     *sipgo.DialogServerCache
	dcc     *sipgo.DialogClientCache

	// Requests receives every request that reaches the phone (OPTIONS,
	// INVITE, BYE, NOTIFY...), after it has been answered.
	Requests chan *sip.Request
	// Calls receives incoming INVITEs for the test to answer.
	Calls chan *IncomingCall

	regMu   sync.Mutex
	regCall string
	regSeq  uint32
}

// NewPhone starts a phone listening on cfg.Listen.
func NewPhone(cfg PhoneConfig) (*Phone, error) {
	if cfg.Transport == "" {
		cfg.Transport = "udp"
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Domain == "" {
		cfg.Domain, _, _ = strings.Cut(cfg.Server, ":")
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "siptest-phone"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	uaOpts := []sipgo.UserAgentOption{sipgo.WithUserAgent(cfg.User)}
	if cfg.Transport == "ws" {
		uaOpts = append(uaOpts, sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerTransports(sip.TransportsConfig{WS: wsTransport(cfg.Origin)})))
	}
	ua, err := sipgo.NewUA(uaOpts...)
	if err != nil {
		return nil, err
	}
	p := &Phone{cfg: cfg, ua: ua, Requests: make(chan *sip.Request, 256), Calls: make(chan *IncomingCall, 16), regCall: sip.GenerateTagN(20)}
	p.srv, err = sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.ctx, p.cancel = ctx, cancel
	switch cfg.Transport {
	case "ws":
		// A browser has no address of its own: callgate reaches it over the
		// connection it opened (RFC 7118 §5, the .invalid Contact host).
		p.addr = "siptest.invalid:0"
	case "tcp":
		p.ln, err = net.Listen("tcp", cfg.Listen)
		if err != nil {
			cancel()
			return nil, err
		}
		p.addr = p.ln.Addr().String()
	default:
		p.pc, err = net.ListenPacket("udp", cfg.Listen)
		if err != nil {
			cancel()
			return nil, err
		}
		p.addr = p.pc.LocalAddr().String()
	}
	host, port, _ := sip.ParseAddr(p.addr)
	opts := []sipgo.ClientOption{sipgo.WithClientHostname(host), sipgo.WithClientLogger(log)}
	if cfg.Transport == "udp" {
		// Send from the listening socket, as a real phone does.
		opts = append(opts, sipgo.WithClientConnectionAddr(p.addr), sipgo.WithClientPort(port))
	}
	p.client, err = sipgo.NewClient(ua, opts...)
	if err != nil {
		cancel()
		return nil, err
	}
	chost, cport := host, port
	if cfg.ContactHost != "" {
		chost, cport, _ = sip.ParseAddr(cfg.ContactHost)
	}
	p.contact = sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: cfg.User, Host: chost, Port: cport}}
	if cfg.Transport != "udp" {
		p.contact.Address.UriParams = sip.NewParams()
		p.contact.Address.UriParams.Add("transport", cfg.Transport)
	}
	p.dsc = sipgo.NewDialogServerCache(p.client, p.contact)
	p.dcc = sipgo.NewDialogClientCache(p.client, p.contact)
	p.handlers()
	if p.ln != nil {
		go p.srv.ServeTCP(p.ln)
	} else if p.pc != nil {
		go p.srv.ServeUDP(p.pc)
		if err := waitServing(ua, "udp", p.addr); err != nil {
			p.Close()
			return nil, err
		}
	}
	return p, nil
}

// Addr is the phone's real listening address.
func (p *Phone) Addr() string { return p.addr }

// User is the phone's extension.
func (p *Phone) User() string { return p.cfg.User }

// Close stops the phone.
func (p *Phone) Close() {
	p.cancel()
	if p.pc != nil {
		p.pc.Close()
	}
	if p.ln != nil {
		p.ln.Close()
	}
	p.ua.Close()
}

func (p *Phone) note(req *sip.Request) {
	select {
	case p.Requests <- req:
	default: // a test that does not read Requests must not block the phone
	}
}

func (p *Phone) handlers() {
	p.srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		p.note(req)
	})
	p.srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		if req.To().Params.Has("tag") {
			acceptReinvite(p.dsc, p.dcc, req, tx)
			p.note(req)
			return
		}
		d, err := p.dsc.ReadInvite(req, tx)
		if err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 400, err.Error(), nil))
			return
		}
		p.note(req)
		offerCall(p.Calls, req, d, tx)
	})
	p.srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = p.dsc.ReadAck(req, tx)
		p.note(req)
	})
	p.srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := p.dsc.ReadBye(req, tx); errors.Is(err, sipgo.ErrDialogDoesNotExists) {
			if err := p.dcc.ReadBye(req, tx); err != nil {
				_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
			}
		}
		p.note(req)
	})
	p.srv.OnCancel(func(req *sip.Request, tx sip.ServerTransaction) {
		// sipgo answers CANCEL and 487s the INVITE in the transaction layer.
		p.note(req)
	})
	for _, m := range []sip.RequestMethod{sip.NOTIFY, sip.INFO, sip.MESSAGE, sip.REFER, sip.UPDATE} {
		p.srv.OnRequest(m, func(req *sip.Request, tx sip.ServerTransaction) {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
			p.note(req)
		})
	}
}

func (p *Phone) serverURI() sip.Uri {
	host, port, _ := sip.ParseAddr(p.cfg.Server)
	return sip.Uri{Scheme: "sip", Host: host, Port: port}
}

// Register registers for expires seconds (0 unregisters) and returns the
// final response, answering one digest challenge.
func (p *Phone) Register(ctx context.Context, expires int) (*sip.Response, error) {
	return p.register(ctx, p.contact.Address.String(), expires, p.cfg.Password)
}

// RegisterWithPassword registers using another password (for failure tests).
func (p *Phone) RegisterWithPassword(ctx context.Context, password string) (*sip.Response, error) {
	return p.register(ctx, p.contact.Address.String(), 300, password)
}

// UnregisterAll sends Contact: * with Expires: 0.
func (p *Phone) UnregisterAll(ctx context.Context) (*sip.Response, error) {
	return p.register(ctx, "*", 0, p.cfg.Password)
}

func (p *Phone) register(ctx context.Context, contact string, expires int, password string) (*sip.Response, error) {
	p.regMu.Lock()
	defer p.regMu.Unlock()
	req := p.newRegister(contact, expires)
	res, err := p.client.Do(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("register %s: %w", p.cfg.User, err)
	}
	if res.StatusCode != 401 && res.StatusCode != 407 {
		return res, nil
	}
	// DoDigestAuth reuses req, bumping its CSeq; keep ours in step.
	res, err = p.client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: p.cfg.User, Password: password})
	p.regSeq = req.CSeq().SeqNo
	if err != nil {
		return nil, fmt.Errorf("register %s: %w", p.cfg.User, err)
	}
	return res, nil
}

func (p *Phone) newRegister(contact string, expires int) *sip.Request {
	p.regSeq++
	req := sip.NewRequest(sip.REGISTER, p.serverURI())
	req.SetTransport(strings.ToUpper(p.cfg.Transport))
	aor := sip.Uri{Scheme: "sip", User: p.cfg.User, Host: p.cfg.Domain}
	from := &sip.FromHeader{Address: aor}
	from.Params.Add("tag", sip.GenerateTagN(10))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: aor})
	cid := sip.CallIDHeader(p.regCall)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: p.regSeq, MethodName: sip.REGISTER})
	if contact == "*" {
		req.AppendHeader(sip.NewHeader("Contact", "*"))
	} else {
		req.AppendHeader(sip.NewHeader("Contact", "<"+contact+">"))
	}
	req.AppendHeader(sip.NewHeader("Expires", fmt.Sprint(expires)))
	req.AppendHeader(sip.NewHeader("User-Agent", p.cfg.UserAgent))
	req.AppendHeader(sip.NewHeader("Content-Length", "0"))
	return req
}

// waitServing waits until sipgo has taken the listening socket into its
// connection pool; a request sent before that would try to bind the
// address a second time.
func waitServing(ua *sipgo.UserAgent, network, addr string) error {
	for i := 0; i < 2000; i++ {
		if c, _ := ua.TransportLayer().GetConnection(network, addr); c != nil {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("sipgo did not start serving %s %s", network, addr)
}

// acceptReinvite answers a re-INVITE in one of our dialogs with 200 and the
// SDP we last gave, its direction the mirror of the offer's (RFC 3264 §6.1:
// a sendonly offer, a hold, is answered recvonly).
func acceptReinvite(dsc *sipgo.DialogServerCache, dcc *sipgo.DialogClientCache, req *sip.Request, tx sip.ServerTransaction) {
	if d, err := dsc.MatchDialogRequest(req); err == nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", mirrorDirection(req.Body(), d.InviteResponse.Body())))
	} else if d, err := dcc.MatchRequestDialog(req); err == nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", mirrorDirection(req.Body(), d.InviteRequest.Body())))
	} else {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
	}
}

// mirrorDirection is sdp with its direction attribute answering offer's.
func mirrorDirection(offer, sdp []byte) []byte {
	answer := "sendrecv"
	if m := directionAttr.FindSubmatch(offer); m != nil {
		answer = map[string]string{"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}[string(m[1])]
	}
	if directionAttr.Match(sdp) {
		return directionAttr.ReplaceAll(sdp, []byte("a="+answer+"\r"))
	}
	return append(append([]byte(nil), sdp...), "a="+answer+"\r\n"...)
}

var directionAttr = regexp.MustCompile(`(?m)^a=(sendrecv|sendonly|recvonly|inactive)\r?$`)

// offerCall hands an incoming INVITE to the test (486 when nobody takes
// it) and keeps the transaction alive until the test has answered.
func offerCall(calls chan *IncomingCall, req *sip.Request, d *sipgo.DialogServerSession, tx sip.ServerTransaction) {
	call := &IncomingCall{Request: req, dialog: d, done: make(chan struct{})}
	select {
	case calls <- call:
	default:
		_ = d.Respond(486, "Busy Here", nil)
		return
	}
	select {
	case <-call.done:
	case <-tx.Done():
	}
}

// wsTransport is sipgo's WebSocket transport dialling callgate's /sip as a
// browser does: subprotocol sip, and origin when set.
func wsTransport(origin string) *sip.TransportWS {
	return &sip.TransportWS{
		DialURI: func(host string) string { return "ws://" + host + "/sip" },
		DialerCreate: func(net.Addr) ws.Dialer {
			d := ws.Dialer{Protocols: []string{"sip"}, Timeout: 5 * time.Second}
			if origin != "" {
				d.Header = ws.HandshakeHeaderHTTP(http.Header{"Origin": {origin}})
			}
			return d
		},
	}
}
