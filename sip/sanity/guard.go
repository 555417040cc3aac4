package sanity

import (
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Guard puts the checks every handler relies on in front of h: sipgo only
// insists on Via and CSeq, and handlers read To, From and Call-ID. A
// malformed request gets 400 naming what is wrong (505 for another SIP
// version; nothing for an ACK or a request without Via), and a panic left in
// h is handed to onPanic and costs this request a 500, never the process.
func Guard(h sipgo.RequestHandler, log *slog.Logger, onPanic func(r any, attrs ...any)) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		if p := Request(req); p != nil {
			log.Debug("malformed request", "method", string(req.Method), "source", req.Source(), "reason", p.Reason)
			if res := Reply(req, p); res != nil {
				_ = tx.Respond(res)
			}
			return
		}
		defer func() {
			r := recover()
			if r == nil {
				return
			}
			onPanic(r, "method", string(req.Method), "source", req.Source(), "call_id", CallID(req))
			if !req.IsAck() {
				_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusInternalServerError, "Server Internal Error", nil))
			}
		}()
		h(req, tx)
	}
}

// LogPanic logs a recovered panic with its stack at error level.
func LogPanic(log *slog.Logger, r any, attrs ...any) {
	log.Error("panic recovered", append(attrs, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))...)
}
