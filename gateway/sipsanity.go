package gateway

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"

	"callgate/sip/sanity"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// guardHandler puts the checks every handler relies on in front of h: a
// request missing a mandatory header gets 400 naming it (or nothing, when
// it has no Via or is an ACK), another SIP version 505, and a panic left in
// h is logged, counted and ends only this request, never the process. It
// runs after admit's network check, so a stranger's malformed packet is
// still dropped without a word.
func (s *sipStack) guardHandler(h sipgo.RequestHandler) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		if p := sanity.Request(req); p != nil {
			s.log.Debug("malformed request", "method", string(req.Method), "source", req.Source(), "reason", p.Reason)
			if res := sanity.Reply(req, p); res != nil {
				_ = tx.Respond(res)
			}
			return
		}
		defer func() {
			if r := recover(); r != nil {
				s.panics.Add(1)
				logPanic(s.log, r, "method", string(req.Method), "source", req.Source(), "call_id", sanity.CallID(req))
				if req.IsAck() {
					return
				}
				_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusInternalServerError, "Server Internal Error", nil))
			}
		}()
		h(req, tx)
	}
}

// logPanic logs a recovered panic with its stack.
func logPanic(log *slog.Logger, r any, attrs ...any) {
	log.Error("panic recovered in SIP handler", append(attrs, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))...)
}

// panics returns the number of panics recovered in SIP handlers and
// calls; it holds on to the SIP stack, which closeAll forgets.
func (g *Gateway) panics() func() float64 {
	s, b := g.sip, g.b2b
	return func() float64 {
		n := b.Panics()
		if s != nil {
			n += s.panics.Load()
		}
		return float64(n)
	}
}

// guardFilter puts two things in front of a transport read filter (the
// registrar's UDP fast path runs there, on sipgo's reader goroutine): a
// datagram that cannot be SIP is dropped without a word (sipgo would log
// each at error level with its whole content), and a panic in f drops the
// datagram and is logged and counted instead of ending the process. TCP
// reads are chunks of a stream, not messages: they pass unchecked.
func (s *sipStack) guardFilter(f sip.TransportReadFilter) sip.TransportReadFilter {
	return func(info sip.TransportReadProps, data []byte) (out []byte, err error) {
		if strings.EqualFold(info.Transport, "udp") && !sanity.Datagram(data) {
			return nil, nil
		}
		defer func() {
			if r := recover(); r != nil {
				s.panics.Add(1)
				logPanic(s.log, r, "source", fmt.Sprint(info.RemoteAddr), "transport", info.Transport)
				out, err = nil, nil
			}
		}()
		return f(info, data)
	}
}
