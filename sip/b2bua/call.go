package b2bua

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"callgate/media/relay"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/google/uuid"
	"github.com/pion/sdp/v3"
)

// call is one call; its fields are touched only by its own goroutine
// (run), which other goroutines reach through post.
type call struct {
	b      *B2BUA
	id     string
	inbox  chan func()
	closed chan struct{}
	ev     Event

	// caller is the dialog that created the call (nil for click-to-call,
	// which callgate places itself); callerLeg is the employee's or
	// caller's dialog however it was made.
	caller        *sipgo.DialogServerSession
	callerLeg     dialogLeg
	callerCallID  string
	callerContact sip.Uri
	callerSide    relay.Side
	callerVer     sdpVersion
	callerIP      netip.Addr // relay address in SDP toward the caller
	callee        *branch
	calleeSide    relay.Side
	media         MediaSession
	ended         bool
	// c2c is set for click-to-call: nothing is answered to a caller, the
	// employee hears ringback until the client answers.
	c2c *c2cState
	// xfer is set while a transfer's target rings.
	xfer *xferState
	// consult is set during an attended transfer's consultation.
	consult *consultState
	// outsideHeld: the employee put the outside party on hold (a re-INVITE
	// passed on with sendonly or inactive); a transfer resumes it.
	outsideHeld bool
	// callerProto is the profile of the caller's offer, which the
	// answers to the caller repeat (RFC 3264 §6).
	callerProto string
	// internalFrom is the display name of an internal caller; set, the
	// callee's INVITE comes from the extension at callgate's own domain.
	internalFrom string
	// leases are the router's, held until the call ends.
	leases []Lease
	// started are the INVITEs this call sent, ended by abort after a panic.
	started []*branch
	// web are the WebRTC legs of browsers' dialogs; webLegs every one the
	// call made, closed when it ends.
	web     map[dialogLeg]WebRTCLeg
	webLegs []WebRTCLeg
}

// dialogLeg is what a running call needs of either kind of dialog.
type dialogLeg interface {
	Bye(ctx context.Context) error
	Do(ctx context.Context, req *sip.Request) (*sip.Response, error)
	Context() context.Context
	ReadBye(req *sip.Request, tx sip.ServerTransaction) error
}

func (b *B2BUA) newCall(dir Direction, req *sip.Request, tx sip.ServerTransaction) (*call, error) {
	c := &call{b: b, id: uuid.NewString(), inbox: make(chan func(), 16), closed: make(chan struct{})}
	c.ev = Event{CallID: c.id, Direction: dir}
	sess, err := b.duaFor(req.Transport()).ReadInvite(req, tx)
	if err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusBadRequest, err.Error(), nil))
		return nil, err
	}
	c.caller = sess
	c.callerLeg = sess
	if overHTTP(req.Transport()) {
		if err := c.browserInvite(req); err != nil {
			c.closeWebLegs()
			_ = sess.Respond(sip.StatusNotAcceptableHere, "Not Acceptable Here", nil, browserWarning(err)...)
			return nil, err
		}
	}
	c.callerCallID = req.CallID().Value()
	b.peers.hold(c, req.Source())
	if ct := req.Contact(); ct != nil {
		c.callerContact = ct.Address
	}
	peer := phonePeer(req.Source())
	if dir == Inbound {
		peer = dialogPeer{upstream: true}
	}
	remote, _ := requestTags(req)
	b.trackDialog(c.callerCallID, tagOf(sess.InviteRequest.To().Params), remote, peer)
	b.bind(req.CallID().Value(), c)
	b.mu.Lock()
	b.byID[c.id] = c
	b.mu.Unlock()
	return c, nil
}

// post hands fn to the call's goroutine; false if the call has ended.
func (c *call) post(fn func()) bool {
	select {
	case c.inbox <- fn:
		return true
	case <-c.closed:
		return false
	}
}

func (c *call) emit(kind EventKind) {
	if c.b.obs == nil {
		return
	}
	e := c.ev
	e.Kind = kind
	e.At = time.Now()
	e.Rung = append([]Target(nil), c.ev.Rung...)
	c.b.obs.CallEvent(e)
}

// offer reads the caller's SDP and opens the media session.
func (c *call) openMedia(body []byte) (*sdp.SessionDescription, error) {
	s, m, err := parseSDP(body)
	if err != nil {
		return nil, err
	}
	ms, err := c.b.media.Open(c.id)
	if err != nil {
		return nil, err
	}
	c.media = ms
	c.ev.Media = ms
	c.callerProto = m.proto
	ms.SetRemote(c.callerSide, m.addr)
	return s, nil
}

// runInbound: the VPBX calls an account; ring the employee's phones.
func (b *B2BUA) runInbound(req *sip.Request, tx sip.ServerTransaction) {
	c, err := b.newCall(Inbound, req, tx)
	if err != nil {
		return
	}
	defer c.recoverPanic()
	c.callerSide, c.calleeSide = SideA, SideB
	c.callerIP = b.cfg.UpstreamMedia
	c.ev.Account = req.Recipient.User
	c.ev.Outside = outsideNumber(req)
	c.ev.Caller = c.ev.Outside
	_ = c.caller.Respond(sip.StatusTrying, "Trying", nil)
	route, err := b.router.Inbound(c.ev.Account, c.ev.Outside)
	if err != nil || len(route.Steps) == 0 {
		c.fail(sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", ResultFailed, fmt.Sprint("no route: ", err))
		return
	}
	offer, err := c.openMedia(req.Body())
	if err != nil {
		c.fail(sip.StatusNotAcceptableHere, "Not Acceptable Here", ResultFailed, err.Error(), codecWarning(err)...)
		return
	}
	c.ring(route.Steps, route.RingTimeout, offer, route.StepTimeouts...)
}

// runOutbound: an authenticated phone calls a number or an extension.
func (b *B2BUA) runOutbound(req *sip.Request, tx sip.ServerTransaction, ext string) {
	route, err := b.router.Outbound(ext, req.Recipient.User)
	if done := (*FeatureDone)(nil); errors.As(err, &done) {
		if done.AuthFailure != "" {
			b.countFailure(req, ext, done.AuthFailure)
		}
		_ = tx.Respond(sip.NewResponseFromRequest(req, done.Status, done.Reason, nil))
		return
	}
	if ref, ok := refusal(err); ok {
		_ = tx.Respond(sip.NewResponseFromRequest(req, ref.Status, ref.Reason, nil))
		return
	}
	dir := Outbound
	if err == nil && route.Internal {
		dir = Internal
	}
	c, cerr := b.newCall(dir, req, tx)
	if cerr != nil {
		endLease(route.Lease)
		return
	}
	c.hold(route.Lease)
	defer c.recoverPanic()
	c.ev.Caller = ext
	_ = c.caller.Respond(sip.StatusTrying, "Trying", nil)
	if err != nil {
		c.fail(sip.StatusNotFound, "Not Found", ResultFailed, err.Error())
		return
	}
	if route.Internal {
		c.callerSide, c.calleeSide = SideA, SideB
		c.callerIP = b.cfg.PhoneMediaIP
		offer, err := c.openMedia(req.Body())
		if err != nil {
			c.fail(sip.StatusNotAcceptableHere, "Not Acceptable Here", ResultFailed, err.Error(), codecWarning(err)...)
			return
		}
		c.internalFrom = displayName(route.CallerName)
		if c.internalFrom == "" {
			c.internalFrom = ext
		}
		c.ring([][]Target{{route.Target}}, b.ringTimeout(), offer)
		return
	}
	c.callerSide, c.calleeSide = SideB, SideA
	c.callerIP = b.cfg.PhoneMediaIP
	c.ev.Account = route.Account.User
	c.ev.Outside = route.Number
	offer, err := c.openMedia(req.Body())
	if err != nil {
		c.fail(sip.StatusNotAcceptableHere, "Not Acceptable Here", ResultFailed, err.Error(), codecWarning(err)...)
		return
	}
	c.dialUpstream(route, offer)
}

// fail answers the caller with a final error and ends the call.
func (c *call) fail(code int, reason, result, why string, hdrs ...sip.Header) {
	c.ev.Result, c.ev.Code, c.ev.Reason = result, code, why
	if c.ev.HangupBy == "" {
		c.ev.HangupBy = "system"
	}
	if c.caller != nil {
		_ = c.caller.Respond(code, reason, nil, hdrs...)
	} else if c.callerLeg != nil {
		ctx, cancel := context.WithTimeout(bg(), 5*time.Second)
		_ = c.callerLeg.Bye(ctx)
		cancel()
	}
	c.finish()
}

func (c *call) finish() {
	if c.ended {
		return
	}
	c.ended = true
	if c.media != nil {
		c.media.Close()
	}
	c.closeWebLegs()
	if c.c2c != nil {
		c.c2c.stopRingback()
	}
	if c.callerCallID != "" {
		c.b.unbind(c.callerCallID)
	}
	c.b.release(c)
	c.b.peers.drop(c)
	c.endLeases()
	if c.callee != nil && c.callee.sess != nil {
		c.b.unbind(c.callee.sess.InviteRequest.CallID().Value())
	}
	c.b.mu.Lock()
	delete(c.b.byID, c.id)
	c.b.mu.Unlock()
	close(c.closed)
	c.emit(EventEnded)
	c.b.log.Info("call ended", "call_id", c.id, "direction", string(c.ev.Direction), "result", c.ev.Result, "hangup_by", c.ev.HangupBy)
}

// earlyMedia relays a 183's media (ringback, announcements) to the caller.
func (c *call) earlyMedia(res *sip.Response) bool {
	s, m, err := parseSDP(res.Body())
	if err != nil {
		return false
	}
	if c.c2c == nil && c.webOf(c.callerLeg) != nil {
		// A browser takes one answer per offer: it gets ringing, and its
		// own ringback, until the 200.
		return false
	}
	if c.c2c != nil {
		// The employee's dialog is up: the relay carries the VPBX's early
		// media to it in place of our ringback.
		c.c2c.stopRingback()
		c.media.SetRemote(c.calleeSide, m.addr)
		return true
	}
	body, err := rewriteSDPAs(s, c.callerIP, c.media.Port(c.callerSide), c.callerVer.next(), answerProfile(c.callerProto))
	if err != nil {
		return false
	}
	c.media.SetRemote(c.calleeSide, m.addr)
	return c.caller.Respond(183, "Session Progress", body, sip.NewHeader("Content-Type", "application/sdp")) == nil
}

// connect completes the call with the branch that answered and runs it to
// its end.
func (c *call) connect(br *branch) {
	c.callee = br
	_, m, err := parseSDP(br.sess.InviteResponse.Body())
	if err != nil {
		_ = br.sess.Ack(bg())
		_ = br.sess.Bye(bg())
		c.fail(sip.StatusNotAcceptableHere, "Not Acceptable Here", ResultFailed, "callee SDP: "+err.Error())
		return
	}
	c.media.SetRemote(c.calleeSide, m.addr)
	if err := br.sess.Ack(bg()); err != nil {
		c.b.log.Warn("ack failed", "call_id", c.id, "error", err)
	}
	if c.c2c != nil {
		c.c2c.stopRingback()
		c.connected(br)
		return
	}
	answerSDP, _, _ := parseSDP(br.sess.InviteResponse.Body())
	body, err := rewriteSDPAs(answerSDP, c.callerIP, c.media.Port(c.callerSide), c.callerVer.next(), answerProfile(c.callerProto))
	if err == nil {
		body, err = c.toBrowser(c.callerLeg, body)
	}
	if err != nil {
		_ = br.sess.Bye(bg())
		c.fail(sip.StatusNotAcceptableHere, "Not Acceptable Here", ResultFailed, err.Error(), codecWarning(err)...)
		return
	}
	if err := c.caller.Respond(sip.StatusOK, "OK", body, sip.NewHeader("Content-Type", "application/sdp")); err != nil {
		_ = br.sess.Bye(bg())
		c.ev.Result, c.ev.HangupBy = ResultAbandoned, "caller"
		c.finish()
		return
	}
	c.connected(br)
}

// connected marks the call answered by br and runs it to its end.
func (c *call) connected(br *branch) {
	switch c.ev.Direction {
	case Inbound:
		c.b.occupy(c, br.target.Extension)
	case Internal:
		c.b.occupy(c, br.target.Extension)
		c.b.occupy(c, c.ev.Caller)
	case Outbound: // the callee is the VPBX; the caller is the phone
		c.b.occupy(c, c.ev.Caller)
	}
	c.ev.Answered = br.target
	c.ev.Result = ResultAnswered
	c.emit(EventAnswered)
	c.talk()
}

// talk runs an established call until a BYE.
func (c *call) talk() {
	for !c.ended {
		select {
		case fn := <-c.inbox:
			fn()
		case <-c.callee.sess.Context().Done():
			if !c.ended {
				c.hangup("callee", "dialog ended")
			}
		case <-c.callerLeg.Context().Done():
			if !c.ended {
				c.hangup("caller", "dialog ended")
			}
		}
	}
}

// hangup ends both legs (the side that hung up has already been answered).
func (c *call) hangup(by, reason string) {
	if c.ended {
		return
	}
	if c.c2c != nil && c.callerLeg == nil {
		// A click-to-call whose employee has not answered yet: the ringing
		// loop cancels the phone.
		c.c2c.cancelled = true
		return
	}
	if c.callee == nil && c.c2c != nil {
		// A click-to-call whose client has not answered: the ringing loop
		// cancels the client's leg when it sees the call ended.
		c.ev.Result, c.ev.HangupBy, c.ev.Reason = ResultAbandoned, c.party(by), reason
		c.c2c.stopRingback()
		if by != "caller" {
			ctx, cancel := context.WithTimeout(bg(), 5*time.Second)
			_ = c.callerLeg.Bye(ctx)
			cancel()
		}
		c.finish()
		return
	}
	if c.callee == nil {
		// Still ringing (shutdown, media timeout): answer the caller instead.
		c.ev.HangupBy = by
		c.fail(sip.StatusServiceUnavailable, "Service Unavailable", ResultFailed, reason)
		return
	}
	c.ev.HangupBy, c.ev.Reason = c.party(by), reason
	if c.callee != nil && c.callee.sess != nil && by != "callee" {
		ctx, cancel := context.WithTimeout(bg(), 5*time.Second)
		_ = c.callee.sess.Bye(ctx)
		cancel()
	}
	if by != "caller" {
		ctx, cancel := context.WithTimeout(bg(), 5*time.Second)
		_ = c.callerLeg.Bye(ctx)
		cancel()
	}
	c.finish()
}

// party names who hung up in the terms of the call record.
func (c *call) party(by string) string {
	switch {
	case by == "caller" && c.ev.Direction == Inbound, by == "callee" && c.ev.Direction == Outbound:
		return "outside"
	case by == "caller" || by == "callee":
		if c.ev.Direction == Internal {
			return by
		}
		return "employee"
	}
	return by
}

// onRequest handles an in-dialog request inside the call's goroutine.
func (c *call) onRequest(req *sip.Request, tx sip.ServerTransaction) {
	leg := c.legOf(req.CallID().Value())
	if leg == legNone || (leg == legTarget && req.Method != sip.BYE) {
		// A branch whose answer the call has not taken yet, or the target
		// of a consultation: neither may change this call.
		code, reason := sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist"
		if leg == legTarget {
			code, reason = sip.StatusRequestPending, "Request Pending"
		}
		_ = tx.Respond(sip.NewResponseFromRequest(req, code, reason, nil))
		return
	}
	fromCaller := leg == legCaller
	switch req.Method {
	case sip.BYE:
		if cs := c.consult; cs != nil {
			if cs.target != nil && req.CallID().Value() == cs.target.sess.InviteRequest.CallID().Value() {
				_ = cs.target.sess.ReadBye(req, tx)
				cs.targetGone = true
				return
			}
			if c.callee != nil && fromCaller == (c.ev.Direction != Inbound) && c.xfer == nil {
				leg, _, _ := c.employeeLeg()
				_ = leg.ReadBye(req, tx)
				cs.employeeGone = true // hanging up completes the transfer
				return
			}
		}
		if c.xfer != nil && c.callee != nil && fromCaller == (c.ev.Direction != Inbound) {
			// The transferor hangs up while the target rings (a blind
			// transfer): the outside party waits for the target.
			leg, _, _ := c.employeeLeg()
			_ = leg.ReadBye(req, tx)
			c.xfer.transferorGone = true
			return
		}
		if fromCaller {
			_ = c.callerLeg.ReadBye(req, tx)
			c.hangup("caller", "BYE")
		} else if c.callee != nil {
			_ = c.callee.sess.ReadBye(req, tx)
			c.hangup("callee", "BYE")
		} else {
			_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
		}
	case sip.INVITE:
		if c.consult != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusRequestPending, "Request Pending", nil))
			return
		}
		c.reinvite(req, tx, fromCaller)
	case sip.INFO:
		c.forward(req, tx, fromCaller)
	case sip.REFER:
		c.onRefer(req, tx, fromCaller)
	default:
		// Only the methods Register routes here arrive; anything else is
		// not allowed inside a call (RFC 3261 §8.2.1: 405 with Allow).
		res := sip.NewResponseFromRequest(req, sip.StatusMethodNotAllowed, "Method Not Allowed", nil)
		res.AppendHeader(sip.NewHeader("Allow", allowed))
		_ = tx.Respond(res)
	}
}

// browserInvite takes a browser's INVITE: its WebRTC offer becomes the
// plain offer of its leg's socket, which the call goes on with.
func (c *call) browserInvite(req *sip.Request) error {
	w, err := c.newWebLeg()
	if err != nil {
		return err
	}
	plain, err := w.FromBrowser(req.Body())
	if err != nil {
		return err
	}
	req.SetBody(plain)
	c.setWeb(c.caller, w)
	return nil
}
