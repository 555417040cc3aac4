package b2bua

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/sdp/v3"
)

// Transfers move the employee side of a call to someone else while the
// outside party stays connected. callgate carries them out itself (it owns
// both legs), rather than passing REFER on to the VPBX: the transferor stays
// connected until the target answers, so a target that does not answer or
// refuses leaves the outside party with the transferor.

// xferState is a transfer in progress.
type xferState struct {
	transferorGone bool // the transferor hung up while the target rang
}

// ErrNoCall means there is no call in progress with that id.
var ErrNoCall = errors.New("no call in progress with this id")

// ErrTransferState means the call cannot be transferred now.
var ErrTransferState = errors.New("the call is not connected to an employee")

// employeeLeg is the dialog facing the employee and the request target in
// it: the callee of an inbound call, the caller of an outbound one.
func (c *call) employeeLeg() (dialogLeg, sip.Uri, Target) {
	if c.ev.Direction == Inbound {
		return c.callee.sess, remoteTarget(c.callee.sess), c.callee.target
	}
	return c.callerLeg, c.callerContact, c.ev.Answered
}

// outsideContext is the outside party's dialog context.
func (c *call) outsideContext() context.Context {
	if c.ev.Direction == Inbound {
		return c.callerLeg.Context()
	}
	return c.callee.sess.Context()
}

// outsideParty is the hangup() name of the outside party's leg.
func (c *call) outsideParty() string {
	if c.ev.Direction == Inbound {
		return "caller"
	}
	return "callee"
}

// employeeParty is the hangup() name of the employee's leg.
func (c *call) employeeParty() string {
	if c.ev.Direction == Inbound {
		return "callee"
	}
	return "caller"
}

// employeeTarget is who talks for the office now.
func (c *call) employeeTarget() Target {
	if c.ev.Direction == Inbound {
		return c.callee.target
	}
	return Target{Extension: c.ev.Caller, Employee: c.ev.Answered.Employee}
}

// outsideSDP is the outside party's current SDP.
func (c *call) outsideSDP() (*sdp.SessionDescription, error) {
	body := c.callee.sess.InviteResponse.Body()
	if c.ev.Direction == Inbound {
		body = c.caller.InviteRequest.Body()
	}
	s, _, err := parseSDP(body)
	return s, err
}

// onRefer handles REFER from the employee's phone: a blind transfer (or an
// attended one, when Refer-To carries Replaces naming a consultation call
// callgate also carries).
func (c *call) onRefer(req *sip.Request, tx sip.ServerTransaction, fromCaller bool) {
	if c.callee == nil || c.ev.Direction == Internal || fromCaller != (c.ev.Direction != Inbound) || c.xfer != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusForbidden, "Forbidden", nil))
		return
	}
	h := req.GetHeader("Refer-To")
	if h == nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusBadRequest, "Missing Refer-To", nil))
		return
	}
	v := strings.Trim(strings.TrimSpace(h.Value()), "<>")
	var uri sip.Uri
	if err := sip.ParseUri(v, &uri); err != nil || uri.User == "" {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusBadRequest, "Bad Refer-To", nil))
		return
	}
	if uri.Headers != nil {
		if rep, ok := uri.Headers.Get("Replaces"); ok {
			c.onAttendedRefer(req, tx, rep)
			return
		}
	}
	from := c.employeeTarget()
	route, err := c.b.router.Transfer(from.Extension, uri.User)
	if ref, ok := refusal(err); ok {
		_ = tx.Respond(sip.NewResponseFromRequest(req, ref.Status, ref.Reason, nil))
		return
	}
	if err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusNotFound, "Not Found", nil))
		return
	}
	_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusAccepted, "Accepted", nil))
	leg, contact, _ := c.employeeLeg()
	notify := func(frag string, final bool) { c.notifyRefer(leg, contact, frag, final) }
	notify("SIP/2.0 100 Trying", false)
	c.transfer(route, "blind", notify)
}

// notifyRefer reports a transfer's progress to the transferor (RFC 3515
// implicit subscription, message/sipfrag body).
func (c *call) notifyRefer(leg dialogLeg, contact sip.Uri, frag string, final bool) {
	req := sip.NewRequest(sip.NOTIFY, contact)
	req.AppendHeader(sip.NewHeader("Event", "refer"))
	state := "active;expires=60"
	if final {
		state = "terminated;reason=noresource"
	}
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	req.AppendHeader(sip.NewHeader("Content-Type", "message/sipfrag;version=2.0"))
	req.SetBody([]byte(frag + "\r\n"))
	ctx, cancel := context.WithTimeout(bg(), 3*time.Second)
	defer cancel()
	if _, err := leg.Do(ctx, req); err != nil {
		c.b.log.Debug("notify to transferor failed", "call_id", c.id, "error", err)
	}
}

// outcome is what an API request run on a call's goroutine returns.
type outcome struct {
	code   int
	reason string
	err    error
}

// onCall runs fn on the goroutine of call id and waits until fn replies
// (which it may do before it returns: a consultation replies when the target
// answers and goes on).
func (b *B2BUA) onCall(id string, fn func(c *call, reply func(outcome))) outcome {
	b.mu.Lock()
	c := b.byID[id]
	b.mu.Unlock()
	if c == nil {
		return outcome{err: ErrNoCall}
	}
	done := make(chan outcome, 1)
	var once sync.Once
	reply := func(o outcome) { once.Do(func() { done <- o }) }
	if !c.post(func() {
		fn(c, reply)
		reply(outcome{err: ErrNoCall}) // fn ended the call without a word
	}) {
		return outcome{err: ErrNoCall}
	}
	select {
	case r := <-done:
		return r
	case <-c.closed:
		// The call may end inside the request (the caller hung up during
		// it); its outcome follows at once if it was run at all.
		select {
		case r := <-done:
			return r
		case <-time.After(time.Second):
			return outcome{err: ErrNoCall}
		}
	}
}

// transferable says whether an API transfer may start: the call is
// connected to an employee, not internal, and no transfer or consultation
// is under way.
func (c *call) transferable() bool {
	return c.callee != nil && c.ev.Direction != Internal && c.xfer == nil && c.consult == nil
}

// Transfer moves a connected call to a target named as in a REFER (an
// extension, an employee id or a number), on a request through the API.
// It returns once the target has answered or failed.
func (b *B2BUA) Transfer(id, target, mode string) (int, string, error) {
	r := b.onCall(id, func(c *call, reply func(outcome)) {
		if !c.transferable() {
			reply(outcome{err: ErrTransferState})
			return
		}
		route, err := b.router.Transfer(c.employeeTarget().Extension, target)
		if err != nil {
			reply(outcome{err: fmt.Errorf("transfer target %q: %w", target, err)})
			return
		}
		code, reason := c.transfer(route, mode, func(string, bool) {})
		reply(outcome{code: code, reason: reason})
	})
	return r.code, r.reason, r.err
}

// transfer rings route with the outside party's media and, when a target
// answers, makes it the call's employee side and releases the transferor.
// notify reports the outcome to a REFER's sender, before the transferor
// is released. It returns the final status.
func (c *call) transfer(route TransferRoute, mode string, notify func(frag string, final bool)) (code int, reason string) {
	if route.Upstream != nil {
		defer func() { c.settle(route.Upstream.Lease, code == sip.StatusOK) }()
	}
	defer func() {
		if code != sip.StatusOK {
			notify(fmt.Sprintf("SIP/2.0 %d %s", code, reason), true)
		}
	}()
	out, err := c.outsideSDP()
	if err != nil {
		return sip.StatusNotAcceptableHere, "Not Acceptable Here"
	}
	c.xfer = &xferState{}
	defer func() { c.xfer = nil }()
	results := make(chan branchResult, 32)
	var branches []*branch
	if route.Upstream != nil {
		br := &branch{target: Target{Extension: route.Upstream.Number}, mediaIP: c.b.cfg.UpstreamMedia}
		body, err := rewriteSDP(out, br.mediaIP, c.media.Port(SideB), br.ver.next())
		if err != nil {
			return sip.StatusNotAcceptableHere, "Not Acceptable Here"
		}
		if err := c.inviteUpstream(br, *route.Upstream, body, results); err == nil {
			branches = append(branches, br)
		}
	} else {
		caller := strings.TrimPrefix(c.outsideNumber(), "+")
		branches, _ = c.dialPhones(route.Targets, caller, caller, func(br *branch) ([]byte, error) {
			return rewriteSDP(out, br.mediaIP, c.media.Port(SideB), br.ver.next())
		}, results)
	}
	if len(branches) == 0 {
		return sip.StatusTemporarilyUnavailable, "Temporarily Unavailable"
	}
	won := c.awaitTransfer(branches, results)
	if won == nil {
		if c.xfer.transferorGone && !c.ended {
			// Nobody is left on the office side to return the caller to.
			c.hangup(c.employeeParty(), "transfer failed after the transferor hung up")
		}
		code := failedStatus(branches)
		return code, reasonPhrase(code)
	}
	if !c.completeTransfer(won, mode, notify, false) {
		return sip.StatusNotAcceptableHere, "Not Acceptable Here"
	}
	if c.outsideHeld {
		c.resumeOutside(won.sess.InviteResponse.Body())
	}
	return sip.StatusOK, "OK"
}

// failedStatus is what a transfer none of whose branches answered reports:
// the last refusal or error among them, else 480.
func failedStatus(branches []*branch) int {
	code := sip.StatusTemporarilyUnavailable
	for _, br := range branches {
		if br.final >= 400 {
			code = br.final
		}
	}
	return code
}

// outsideNumber is the outside party's number, shown to the target.
func (c *call) outsideNumber() string { return c.ev.Outside }

// awaitTransfer waits for a transfer target to answer while the call goes
// on (in-dialog requests, hang-ups). nil: nobody answered, or the call ended.
func (c *call) awaitTransfer(branches []*branch, results chan branchResult) *branch {
	timer := time.NewTimer(c.b.ringTimeout())
	defer timer.Stop()
	pending := len(branches)
	outside := c.outsideContext()
	for pending > 0 {
		select {
		case fn := <-c.inbox:
			fn()
			if c.ended {
				c.stopRinging(branches, nil, results, pending)
				return nil
			}
		case <-outside.Done():
			// The outside party hung up while the target rang.
			c.stopRinging(branches, nil, results, pending)
			c.hangup(c.outsideParty(), "hung up during a transfer")
			return nil
		case <-timer.C:
			c.stopRinging(branches, nil, results, pending)
			return nil
		case r := <-results:
			if !r.end || (r.failover && c.failover(r, results)) {
				continue
			}
			pending--
			if !c.branchEnded(r) {
				continue
			}
			c.stopRinging(branches, r.br, results, pending)
			return r.br
		}
	}
	return nil
}

// completeTransfer makes br the employee side: media to it, the
// transferor released, the record told.
// acked: br's INVITE was answered and ACKed earlier (a dialog moved in from
// a consultation), and the caller has already pointed the media at it.
func (c *call) completeTransfer(br *branch, mode string, notify func(frag string, final bool), acked bool) bool {
	if !acked {
		_, m, err := parseSDP(br.sess.InviteResponse.Body())
		_ = br.sess.Ack(bg())
		if err != nil {
			_ = br.sess.Bye(bg())
			return false
		}
		c.media.SetRemote(SideB, m.addr)
	}
	oldLeg, _, _ := c.employeeLeg()
	from := c.employeeTarget()
	oldCallID := ""
	if c.ev.Direction == Inbound {
		oldCallID = c.callee.sess.InviteRequest.CallID().Value()
		c.callee = br
	} else {
		oldCallID = c.callerCallID
		c.caller = nil
		c.callerLeg = br.sess
		c.callerCallID = br.sess.InviteRequest.CallID().Value()
		c.callerContact = remoteTarget(br.sess)
		c.callerVer = br.ver
		c.callerIP = br.mediaIP
		c.ev.Caller = br.target.Extension
	}
	c.b.vacate(c, from.Extension)
	c.b.occupy(c, br.target.Extension)
	if !c.xfer.transferorGone {
		notify("SIP/2.0 200 OK", true)
		// Most phones hang up themselves on the final NOTIFY (RFC 5589 §6):
		// callgate's BYE follows a moment later, so as not to cross theirs
		// (a transferor gone by then answers it as a released dialog), and
		// the call's goroutine does not wait for it.
		go func() {
			time.Sleep(transferorGrace)
			ctx, cancel := context.WithTimeout(bg(), 5*time.Second)
			defer cancel()
			_ = oldLeg.Bye(ctx)
		}()
	}
	c.dropWeb(oldLeg)
	c.b.unbind(oldCallID)
	c.ev.TransferFrom, c.ev.TransferMode = from, mode
	c.ev.Answered = br.target
	if br.target.Employee != "" {
		c.ev.Rung = append(c.ev.Rung, br.target)
	}
	c.emit(EventTransferred)
	c.ev.TransferFrom, c.ev.TransferMode = Target{}, ""
	c.b.log.Info("call transferred", "call_id", c.id, "from", from.Extension, "to", br.target.Extension, "mode", mode)
	return true
}

// onAttendedRefer carries out REFER with Replaces: the transferor has a
// consultation call (also through callgate) with the target, and asks to
// connect the outside party to the target in its place. callgate joins the
// two calls itself: the target's dialog moves into this call, the
// consultation call ends, the transferor is released from both.
func (c *call) onAttendedRefer(req *sip.Request, tx sip.ServerTransaction, replaces string) {
	rep, err := url.QueryUnescape(replaces)
	if err != nil {
		rep = replaces
	}
	// The consultation must be the REFER's sender's own call: a phone may
	// not pull another phone's call into this one.
	callID, owned := c.b.ownsReplaced(rep, sourceOf(req))
	other := c.b.lookup(callID)
	if !owned || other == nil || other == c {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", nil))
		return
	}
	_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusAccepted, "Accepted", nil))
	leg, contact, _ := c.employeeLeg()
	notify := func(frag string, final bool) { c.notifyRefer(leg, contact, frag, final) }
	notify("SIP/2.0 100 Trying", false)
	type handed struct {
		br  *branch
		err error
	}
	got := make(chan handed, 1)
	if !other.post(func() { br, err := other.handOver(); got <- handed{br, err} }) {
		notify("SIP/2.0 481 Call/Transaction Does Not Exist", true)
		return
	}
	var h handed
	select {
	case h = <-got:
	case <-other.closed:
		// handOver itself ends the consultation call before its answer is
		// sent; a call that ended otherwise never runs it.
		select {
		case h = <-got:
		case <-time.After(time.Second):
			h.err = errors.New("consultation call ended")
		}
	}
	if h.err != nil {
		notify("SIP/2.0 481 Call/Transaction Does Not Exist", true)
		return
	}
	if !c.takeOver(h.br, notify) {
		notify("SIP/2.0 488 Not Acceptable Here", true)
	}
}

// handOver ends an internal consultation call without hanging up its
// callee, and returns the callee's dialog for another call to take over.
func (c *call) handOver() (*branch, error) {
	if c.ended || c.callee == nil || c.ev.Direction != Internal {
		return nil, errors.New("not a connected internal call")
	}
	br := c.callee
	c.callee = nil // finish must neither BYE nor unbind it
	ctx, cancel := context.WithTimeout(bg(), 5*time.Second)
	_ = c.callerLeg.Bye(ctx)
	cancel()
	c.ev.HangupBy, c.ev.Reason = "transfer", "attended transfer: the callee went to another call"
	c.finish()
	return br, nil
}

// takeOver makes br (a dialog moved in from a consultation call) the
// employee side of this call: re-INVITE it to this call's relay port,
// resume the outside party if it was held, release the transferor.
func (c *call) takeOver(br *branch, notify func(string, bool)) bool {
	out, err := c.outsideSDP()
	if err != nil {
		return false
	}
	c.b.bind(br.sess.InviteRequest.CallID().Value(), c)
	br.mediaIP = c.b.cfg.PhoneMediaIP
	body, err := rewriteSDP(out, br.mediaIP, c.media.Port(SideB), br.ver.next())
	if err != nil {
		return false
	}
	res, err := c.reinviteDialog(br.sess, remoteTarget(br.sess), body)
	if err != nil || !res.IsSuccess() {
		_ = br.sess.Bye(bg())
		c.b.unbind(br.sess.InviteRequest.CallID().Value())
		return false
	}
	if _, m, err := parseSDP(res.Body()); err == nil {
		c.media.SetRemote(SideB, m.addr)
	}
	c.xfer = &xferState{}
	defer func() { c.xfer = nil }()
	ok := c.completeTransfer(br, "attended", notify, true)
	if ok && c.outsideHeld {
		c.resumeOutside(res.Body())
	}
	return ok
}

// reinviteDialog sends a re-INVITE with body in a dialog and ACKs a 2xx.
func (c *call) reinviteDialog(leg dialogLeg, contact sip.Uri, body []byte) (*sip.Response, error) {
	req := sip.NewRequest(sip.INVITE, contact)
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(body)
	ctx, cancel := context.WithTimeout(bg(), 10*time.Second)
	defer cancel()
	res, req, err := c.doInDialog(ctx, leg, req)
	if err == nil && isChallenge(res) {
		res, req, err = c.answerChallenge(leg, req, res)
	}
	if err != nil {
		return nil, err
	}
	if res.IsSuccess() {
		_ = c.b.client.WriteRequest(ackFor(req))
	}
	return res, nil
}

// resumeOutside takes the outside party off hold after a transfer (the
// transferor held it before transferring) with the new employee's SDP.
func (c *call) resumeOutside(employeeSDP []byte) {
	s, _, err := parseSDP(employeeSDP)
	if err != nil {
		return
	}
	for _, m := range s.MediaDescriptions {
		kept := m.Attributes[:0]
		for _, a := range m.Attributes {
			switch a.Key {
			case "sendonly", "recvonly", "inactive", "sendrecv":
				continue
			}
			kept = append(kept, a)
		}
		m.Attributes = append(kept, sdp.Attribute{Key: "sendrecv"})
	}
	leg, contact, side, ip, ver := c.callerLeg, c.callerContact, c.callerSide, c.callerIP, &c.callerVer
	if c.ev.Direction != Inbound {
		leg, contact, side, ip, ver = c.callee.sess, remoteTarget(c.callee.sess), c.calleeSide, c.callee.mediaIP, &c.callee.ver
	}
	body, err := rewriteSDP(s, ip, c.media.Port(side), ver.next())
	if err != nil {
		return
	}
	if res, err := c.reinviteDialog(leg, contact, body); err == nil && res.IsSuccess() {
		c.outsideHeld = false
		if _, m, err := parseSDP(res.Body()); err == nil {
			c.media.SetRemote(side, m.addr)
		}
	}
}

// transferorGrace is how long callgate lets a transferor hang up itself
// after the final NOTIFY before it sends its own BYE.
const transferorGrace = 300 * time.Millisecond
