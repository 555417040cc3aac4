// Package sipws is the entry of SIP over WebSocket (RFC 7118): an
// http.Handler for the HTTP listener's /sip that checks what a browser's
// upgrade request must carry (the subprotocol "sip", the console's own
// Origin), counts the connection against its client's cap, and hands the
// connection to sipgo's WebSocket transport, which it serves as a
// net.Listener. Everything after the upgrade (framing, parsing, the
// registrar's digest and bans) is the SIP stack's, as for SIP over TCP.
package sipws

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"callgate/sip/connlimit"
)

// Subprotocol is the WebSocket subprotocol of SIP (RFC 7118 §4.1).
const Subprotocol = "sip"

// Config is what the entry needs from the rest of callgate.
type Config struct {
	// Origin reports whether a browser's Origin header may open SIP over
	// WebSocket from request r: the console's own origin (OwnOrigin).
	Origin func(r *http.Request, origin string) bool
	// Client is the address of the client behind r (the peer, or the one a
	// trusted proxy names): connections count against it, bans and
	// allowed networks judge it, and it is the SIP source of its messages.
	Client func(r *http.Request) string
	// Admit, when set, refuses a client before the upgrade with a reason
	// (a network phones may not register from).
	Admit func(client netip.Addr) error
	// Limiter caps connections per client and closes idle ones.
	Limiter *connlimit.Limiter
	// Local is the HTTP listener's address, the listener's Addr.
	Local net.Addr
	// Log gets refusals, at most one line per client a minute.
	Log *slog.Logger
	// Closed, when set, is told each handed-over connection's remote
	// address once it closes: a browser's registration dies with it.
	Closed func(remote netip.AddrPort)
}

// Stats counts upgrades and refusals; read them with Load.
type Stats struct {
	Upgraded   atomic.Uint64 // connections handed to the SIP stack
	BadRequest atomic.Uint64 // not a WebSocket upgrade, or no "sip" subprotocol
	Origin     atomic.Uint64 // an Origin other than the console's
	Refused    atomic.Uint64 // a client Admit refused, or over its cap
}

// Entry is the /sip handler and the listener sipgo serves.
type Entry struct {
	// Stats is updated as upgrades are accepted or refused.
	Stats Stats

	cfg    Config
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
	quiet  sync.Map // netip.Addr → time.Time of the last refusal logged
}

// New returns an entry; serve it with sipgo's ServeWS and route /sip to it.
func New(cfg Config) *Entry {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Entry{cfg: cfg, conns: make(chan net.Conn), closed: make(chan struct{})}
}

// refuse answers an upgrade that cannot be served with a plain-text reason
// the browser's developer tools show, and logs it once a minute per client.
func (e *Entry) refuse(w http.ResponseWriter, client netip.Addr, code int, counter *atomic.Uint64, reason string) {
	counter.Add(1)
	now := time.Now()
	if last, ok := e.quiet.Load(client); !ok || now.Sub(last.(time.Time)) >= time.Minute {
		e.quiet.Store(client, now)
		e.cfg.Log.Warn("sip over websocket refused", "source", client.String(), "status", code, "reason", reason)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Connection", "close")
	w.WriteHeader(code)
	fmt.Fprintln(w, reason)
}

// ServeHTTP checks an upgrade request and passes its connection on.
func (e *Entry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	client, err := netip.ParseAddr(e.cfg.Client(r))
	if err != nil {
		e.refuse(w, client, http.StatusBadRequest, &e.Stats.BadRequest, "the client's address is unknown")
		return
	}
	client = client.Unmap()
	if r.Method != http.MethodGet || !headerHas(r.Header, "Connection", "upgrade") || !headerHas(r.Header, "Upgrade", "websocket") {
		w.Header().Set("Upgrade", "websocket")
		e.refuse(w, client, http.StatusUpgradeRequired, &e.Stats.BadRequest, "SIP over WebSocket: send a WebSocket upgrade (GET, Upgrade: websocket) with subprotocol sip")
		return
	}
	if !headerHas(r.Header, "Sec-WebSocket-Protocol", Subprotocol) {
		e.refuse(w, client, http.StatusBadRequest, &e.Stats.BadRequest, "SIP over WebSocket needs the subprotocol sip (Sec-WebSocket-Protocol: sip, RFC 7118)")
		return
	}
	// Browsers always send Origin; a page from another site must not use
	// the employee's browser to reach the registrar. Clients that are not
	// browsers send none and are judged by digest like any phone.
	if origin := r.Header.Get("Origin"); origin != "" && !e.cfg.Origin(r, origin) {
		e.refuse(w, client, http.StatusForbidden, &e.Stats.Origin, fmt.Sprintf("origin %q may not open SIP over WebSocket: only the console's own pages may", origin))
		return
	}
	if e.cfg.Admit != nil {
		if err := e.cfg.Admit(client); err != nil {
			e.refuse(w, client, http.StatusForbidden, &e.Stats.Refused, err.Error())
			return
		}
	}
	if e.cfg.Limiter != nil && e.cfg.Limiter.Full(client) {
		e.refuse(w, client, http.StatusServiceUnavailable, &e.Stats.Refused, "too many SIP connections from this address")
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		e.refuse(w, client, http.StatusHTTPVersionNotSupported, &e.Stats.BadRequest, "SIP over WebSocket needs HTTP/1.1")
		return
	}
	raw, buf, err := hj.Hijack()
	if err != nil {
		e.cfg.Log.Debug("hijack failed", "source", client.String(), "error", err)
		return
	}
	// The HTTP server's read and write timeouts are for requests; a SIP
	// connection lives as long as its registration (the limiter closes it
	// when idle).
	_ = raw.SetDeadline(time.Time{})
	rc := newReplayConn(raw, replay(r, buf.Reader), client)
	rc.closed = e.cfg.Closed
	var conn net.Conn = rc
	if e.cfg.Limiter != nil {
		tc, ok := e.cfg.Limiter.Track(conn, client)
		if !ok {
			e.Stats.Refused.Add(1)
			return
		}
		conn = tc
	}
	// Counted before the hand-over: whoever accepts the connection must
	// already see it counted.
	e.Stats.Upgraded.Add(1)
	select {
	case e.conns <- conn:
	case <-e.closed:
		e.Stats.Upgraded.Add(^uint64(0))
		conn.Close()
	}
}

// headerHas reports whether one of the comma-separated tokens of header
// name is token, compared without case.
func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// replay is the upgrade request as it came, followed by whatever the
// client sent after it: sipgo's transport performs the handshake itself
// from the connection's first bytes.
func replay(r *http.Request, rest *bufio.Reader) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\n", r.RequestURI, r.Host)
	_ = r.Header.Write(&b)
	b.WriteString("\r\n")
	if n := rest.Buffered(); n > 0 {
		p, _ := rest.Peek(n)
		b.Write(p)
	}
	return b.Bytes()
}

// replayConn reads the replayed bytes before the connection's own and
// names the client as its remote address: behind a trusted proxy the peer
// is the proxy, and the SIP source must be the client (the peer's port
// keeps each connection's address its own).
type replayConn struct {
	net.Conn
	head   io.Reader
	remote *net.TCPAddr
	closed func(netip.AddrPort)
	once   sync.Once
}

func newReplayConn(c net.Conn, head []byte, client netip.Addr) *replayConn {
	port := uint16(0)
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		port = uint16(a.Port)
	}
	return &replayConn{Conn: c, head: bytes.NewReader(head), remote: net.TCPAddrFromAddrPort(netip.AddrPortFrom(client.Unmap(), port))}
}

func (c *replayConn) Read(p []byte) (int, error) {
	if c.head != nil {
		n, err := c.head.Read(p)
		if err == io.EOF {
			c.head, err = nil, nil
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
	return c.Conn.Read(p)
}

func (c *replayConn) RemoteAddr() net.Addr { return c.remote }

// Close closes the connection and reports it closed (once).
func (c *replayConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		if c.closed != nil {
			c.closed(c.remote.AddrPort())
		}
	})
	return err
}

// Accept returns the next upgraded connection (net.Listener).
func (e *Entry) Accept() (net.Conn, error) {
	select {
	case c := <-e.conns:
		return c, nil
	case <-e.closed:
		return nil, net.ErrClosed
	}
}

// Close stops handing connections on; upgrades still in flight are closed.
func (e *Entry) Close() error {
	e.once.Do(func() { close(e.closed) })
	return nil
}

// Addr is the HTTP listener's address (net.Listener).
func (e *Entry) Addr() net.Addr {
	if e.cfg.Local != nil {
		return e.cfg.Local
	}
	return &net.TCPAddr{}
}

// OwnOrigin is the usual Config.Origin: the public URL's origin when one
// is configured, or the origin the console itself is served from (the
// scheme the client sees and the Host it asked for). A Host is trusted for
// that only where a name cannot be rebound to callgate behind the
// browser's back (DNS rebinding: a foreign page whose name comes to point
// at callgate's address would otherwise be "own"): over https, where the
// certificate vouches for the name, or as an address or localhost.
func OwnOrigin(https func(*http.Request) bool, publicURL string) func(*http.Request, string) bool {
	public := ""
	if u, err := parseOrigin(publicURL); err == nil {
		public = u
	}
	return func(r *http.Request, origin string) bool {
		o, err := parseOrigin(origin)
		if err != nil {
			return false
		}
		if public != "" && o == public {
			return true
		}
		scheme := "http"
		if https(r) {
			scheme = "https"
		}
		own, err := parseOrigin(scheme + "://" + r.Host)
		if err != nil || o != own {
			return false
		}
		if scheme == "https" {
			return true
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(r.Host); err == nil {
			host = h
		}
		_, err = netip.ParseAddr(strings.Trim(host, "[]"))
		return err == nil || strings.EqualFold(host, "localhost")
	}
}
