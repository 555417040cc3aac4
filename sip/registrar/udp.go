package registrar

import (
	"bytes"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"callgate/sip/sipnet"

	"github.com/emiago/sipgo/sip"
)

// UDPFilter returns a sipgo transport read filter that answers REGISTER
// requests arriving over UDP on the reader goroutine, statelessly, the way
// Kamailio's registrar replies with sl_send_reply: a registrar's answer is
// idempotent, so a retransmitted REGISTER is simply processed again (the
// digest nonce-count check recognises it as a retransmission). This keeps
// REGISTER storms out of the transaction layer, whose per-request timers
// and goroutines would otherwise bound throughput.
//
// conn returns the listening socket for a local address. Datagrams that are
// not REGISTER pass through to sipgo unchanged, except that requests from
// banned IP:port sources and from scanner user agents are dropped.
func (r *Registrar) UDPFilter(conn func(local string) net.PacketConn) sip.TransportReadFilter {
	parser := sip.NewParser()
	bufs := sync.Pool{New: func() any { return new(bytes.Buffer) }}
	fast := sync.Pool{New: func() any { return new(fastBuf) }}
	var lastLocal atomic.Pointer[localConn]
	return func(info sip.TransportReadProps, data []byte) ([]byte, error) {
		ua, ok := info.RemoteAddr.(*net.UDPAddr)
		if !ok {
			return data, nil
		}
		src := ua.AddrPort()
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		if !bytes.HasPrefix(data, []byte("REGISTER ")) {
			if !looksLikeRequest(data) {
				return data, nil
			}
			// An ACK is never answered, so it tells a banned source
			// nothing; dropping it would only make our transaction resend
			// its final answer until Timer H.
			if r.guard.Blocked(src) && !bytes.HasPrefix(data, []byte("ACK ")) {
				r.Stats.Dropped.Add(1)
				return nil, nil
			}
			if ua, ok := r.conf().Scanners.MatchMessage(data); ok {
				r.scanner(src, "", ua)
				return nil, nil
			}
			return data, nil
		}
		lc := lastLocal.Load()
		if lc == nil || lc.addr != info.LocalAddr {
			// A listener reports the same address each time: remember the
			// last one rather than format and look it up per datagram.
			lc = &localConn{addr: info.LocalAddr, pc: conn(info.LocalAddr.String())}
			if u, ok := info.LocalAddr.(*net.UDPAddr); ok {
				ap := u.AddrPort()
				lc.local = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			} else {
				lc.local, _ = netip.ParseAddrPort(info.LocalAddr.String())
			}
			if lc.pc != nil {
				lastLocal.Store(lc) // a socket not known yet is looked up again
			}
		}
		pc, local := lc.pc, lc.local
		if pc == nil {
			return data, nil
		}
		fsrc := Source{Addr: src, Local: local, Transport: sipnet.UDP}
		b := fast.Get().(*fastBuf)
		answer, handled := r.handleFast(data, fsrc, b)
		if answer {
			_, _ = pc.WriteTo(b.out, ua)
		}
		fast.Put(b)
		if handled {
			return nil, nil
		}
		msg, err := parser.ParseSIP(data)
		if err != nil {
			return nil, nil // unparseable datagram: nothing sane to answer to
		}
		req, ok := msg.(*sip.Request)
		if !ok {
			return nil, nil
		}
		req.SetTransport(sipnet.UDP.Via())
		if h := req.GetHeader("User-Agent"); h != nil && r.conf().Scanners.Match(h.Value()) {
			user := ""
			if f := req.From(); f != nil {
				user = f.Address.User
			}
			r.scanner(src, user, h.Value())
			return nil, nil
		}
		res := r.Handle(req, fsrc)
		if res == nil {
			return nil, nil
		}
		buf := bufs.Get().(*bytes.Buffer)
		buf.Reset()
		res.StringWrite(buf)
		_, _ = pc.WriteTo(buf.Bytes(), ua)
		bufs.Put(buf)
		return nil, nil
	}
}

// localConn is a listener's socket and address as the UDP filter last
// saw them.
type localConn struct {
	addr  net.Addr
	pc    net.PacketConn
	local netip.AddrPort
}

// looksLikeRequest tells requests from responses: a response starts "SIP/2.0".
func looksLikeRequest(b []byte) bool { return !bytes.HasPrefix(b, []byte("SIP/2.0 ")) }

// Handler is the sipgo request handler for REGISTER that did not take the
// UDP fast path (TCP, where the transaction layer is cheap and the answer
// must go back on the accepted connection). locals maps a transport
// ("udp", "tcp") to our listener address for it.
func (r *Registrar) Handler(locals map[sipnet.Transport]netip.AddrPort) func(req *sip.Request, tx sip.ServerTransaction) {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		src, err := netip.ParseAddrPort(req.Source())
		if err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusBadRequest, "Bad Source", nil))
			return
		}
		tr := sipnet.TransportOf(req.Transport())
		res := r.Handle(req, Source{Addr: netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), Local: locals[tr], Transport: tr})
		if res != nil {
			_ = tx.Respond(res)
		}
	}
}
