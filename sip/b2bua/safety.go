package b2bua

import (
	"context"
	"errors"
	"time"

	"callgate/sip/sanity"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Panics is how many panics the B2BUA recovered (in request handlers and
// in calls); each ended at most one call.
func (b *B2BUA) Panics() uint64 { return b.panics.Load() }

// errPanicked ends a branch whose goroutine panicked.
var errPanicked = errors.New("internal error (panic recovered)")

// guard puts sanity.Guard in front of a handler, so the B2BUA is safe on
// its own (without the gateway's admission in front), counting its panics.
func (b *B2BUA) guard(h sipgo.RequestHandler) sipgo.RequestHandler {
	return sanity.Guard(h, b.log, b.notePanic)
}

func (b *B2BUA) notePanic(r any, attrs ...any) {
	b.panics.Add(1)
	sanity.LogPanic(b.log, r, attrs...)
}

// recoverPanic is deferred at the top of every call's goroutine: a panic
// in the call's logic (its own flow or a request posted to it) is logged,
// counted and ends this call, releasing its legs and media, while the
// other calls go on.
func (c *call) recoverPanic() {
	r := recover()
	if r == nil {
		return
	}
	c.b.notePanic(r, "call_id", c.id, "direction", string(c.ev.Direction))
	c.abort()
}

// recoverQuiet is deferred by the goroutines a call leaves behind (ending
// the branches that lost): a panic there is logged and counted; the call
// itself is not theirs to end.
func (c *call) recoverQuiet() {
	if r := recover(); r != nil {
		c.b.notePanic(r, "call_id", c.id, "during", "cleanup")
	}
}

// abort ends a call whose state may be half-updated by a panic: every step
// is tried on its own, so one that panics again leaves the others done.
func (c *call) abort() {
	step := func(fn func()) {
		defer func() {
			if r := recover(); r != nil {
				c.b.notePanic(r, "call_id", c.id, "during", "abort")
			}
		}()
		fn()
	}
	ctx, cancel := context.WithTimeout(bg(), 5*time.Second)
	defer cancel()
	for _, br := range append(c.started, c.callee) {
		step(func() {
			if br == nil {
				return
			}
			if br.sess != nil && br.sess.InviteResponse != nil && br.sess.InviteResponse.IsSuccess() {
				_ = br.sess.Bye(ctx)
			} else if br.cancel != nil {
				br.cancel()
			}
		})
	}
	step(func() {
		switch {
		case c.caller != nil && c.caller.LoadState() < sip.DialogStateEstablished:
			// Not answered yet: a final error, not a BYE, ends it.
			_ = c.caller.Respond(sip.StatusInternalServerError, "Server Internal Error", nil)
		case c.callerLeg != nil:
			_ = c.callerLeg.Bye(ctx)
		}
	})
	if c.ended {
		return
	}
	c.ev.Result, c.ev.HangupBy, c.ev.Reason = ResultFailed, "system", "internal error"
	step(c.finish)
	step(func() {
		// finish may have stopped half-way: these must happen for the
		// call to be gone.
		if c.media != nil {
			c.media.Close()
		}
		c.b.release(c)
		c.b.mu.Lock()
		for id, other := range c.b.legs {
			if other == c {
				delete(c.b.legs, id)
			}
		}
		delete(c.b.byID, c.id)
		c.b.mu.Unlock()
		select {
		case <-c.closed:
		default:
			close(c.closed)
		}
	})
}

// checkResponse drops a response to an INVITE that is missing what the
// dialog is built from (a 2xx without Contact or To tag, a response without
// Call-ID...). A provisional one is ignored; a final one ends the branch
// as failed, the way an unanswered branch ends.
func (c *call) checkResponse(res *sip.Response) (forward bool, err error) {
	p := sanity.Response(res)
	if p == nil {
		return true, nil
	}
	c.b.log.Warn("malformed response dropped", "call_id", c.id, "status", res.StatusCode, "source", res.Source(), "reason", p.Reason)
	if res.IsProvisional() {
		return false, nil
	}
	return false, p
}

// checkFirst runs checkResponse before next sees a response.
func (c *call) checkFirst(next func(*sip.Response) error) func(*sip.Response) error {
	return func(res *sip.Response) error {
		if ok, err := c.checkResponse(res); !ok {
			return err
		}
		return next(res)
	}
}

// remoteTarget is where requests inside a dialog callgate placed go: the
// Contact of its 2xx, which checkResponse makes sure of; the INVITE's
// Request-URI should one ever lack it.
func remoteTarget(sess *sipgo.DialogClientSession) sip.Uri {
	if sess.InviteResponse != nil {
		if ct := sess.InviteResponse.Contact(); ct != nil {
			return ct.Address
		}
	}
	return sess.InviteRequest.Recipient
}
