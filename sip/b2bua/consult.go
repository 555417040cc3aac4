package b2bua

import (
	"context"
	"errors"
	"time"

	"github.com/emiago/sipgo/sip"
)

// An attended transfer started through the API: callgate itself sets up
// the consultation. The employee's phone is re-INVITEd to a second relay
// session that faces the target, the outside party hears a hold tone, and
// once the target answers employee and target talk. Completing (the API, or
// the employee hanging up) re-INVITEs the target onto the call's own relay
// port and releases the employee; cancelling (the API, or the target
// hanging up) brings the employee back.

// consultState is an attended transfer's consultation in progress.
type consultState struct {
	target       *branch
	media        MediaSession // employee (A) <-> target (B)
	holdTone     func()
	finish       string // "complete" or "cancel" once decided
	employeeGone bool
	targetGone   bool
}

// Consultation outcomes.
var (
	ErrNoConsultation = errors.New("no attended transfer in progress on this call")
)

// employeeVer is the SDP version counter of the employee's dialog.
func (c *call) employeeVer() *sdpVersion {
	if c.ev.Direction == Inbound {
		return &c.callee.ver
	}
	return &c.callerVer
}

// ConsultTransfer starts an attended transfer of a connected call to target
// and returns once the target answered (the consultation is on) or failed.
func (b *B2BUA) ConsultTransfer(id, target string) (int, string, error) {
	r := b.onCall(id, func(c *call, reply func(outcome)) {
		if !c.transferable() {
			reply(outcome{err: ErrTransferState})
			return
		}
		route, err := b.router.Transfer(c.employeeTarget().Extension, target)
		if err != nil {
			reply(outcome{err: err})
			return
		}
		if route.Upstream != nil {
			endLease(route.Upstream.Lease) // a consultation rings phones only
		}
		c.consultation(route, func(code int, reason string) { reply(outcome{code: code, reason: reason}) })
	})
	return r.code, r.reason, r.err
}

// FinishConsultation completes ("complete") or cancels ("cancel") the
// attended transfer in progress on a call.
func (b *B2BUA) FinishConsultation(id, how string) error {
	return b.onCall(id, func(c *call, reply func(outcome)) {
		if c.consult == nil || c.consult.finish != "" {
			reply(outcome{err: ErrNoConsultation})
			return
		}
		c.consult.finish = how
		reply(outcome{})
	}).err
}

// consultation runs an attended transfer inside the call's goroutine;
// answered reports the target's answer (200) or failure as soon as known.
func (c *call) consultation(route TransferRoute, answered func(int, string)) {
	out, err := c.outsideSDP()
	if err != nil {
		answered(sip.StatusNotAcceptableHere, "Not Acceptable Here")
		return
	}
	y, err := c.b.media.Open(c.id + "-consult")
	if err != nil {
		answered(sip.StatusServiceUnavailable, "Service Unavailable")
		return
	}
	cs := &consultState{media: y}
	c.consult = cs
	defer func() { c.consult = nil }()
	leg, contact, _ := c.employeeLeg()
	ver := c.employeeVer()

	// Move the employee's phone to the consultation session.
	body, err := rewriteSDP(out, c.b.cfg.PhoneMediaIP, y.Port(SideA), ver.next())
	if err != nil {
		y.Close()
		answered(sip.StatusNotAcceptableHere, "Not Acceptable Here")
		return
	}
	res, err := c.reinviteDialog(leg, contact, body)
	if err != nil || !res.IsSuccess() {
		y.Close()
		answered(sip.StatusServiceUnavailable, "Service Unavailable")
		return
	}
	if _, m, err := parseSDP(res.Body()); err == nil {
		y.SetRemote(SideA, m.addr)
	}
	c.media.Park(SideB)
	cs.holdTone = c.media.Ringback(SideA, firstG711(out))

	// Ring the target, offering what the outside party speaks.
	results := make(chan branchResult, 32)
	from := c.employeeTarget()
	branches, _ := c.dialPhones(route.Targets, from.Extension, from.Extension, func(br *branch) ([]byte, error) {
		return rewriteSDP(out, br.mediaIP, y.Port(SideB), br.ver.next())
	}, results)
	c.xfer = &xferState{}
	var won *branch
	if len(branches) > 0 {
		won = c.awaitTransfer(branches, results)
	}
	cs.employeeGone = c.xfer.transferorGone
	c.xfer = nil
	if c.ended {
		cs.holdTone()
		y.Close()
		answered(sip.StatusRequestTerminated, "Request Terminated")
		return
	}
	if won == nil {
		code := failedStatus(branches)
		answered(code, reasonPhrase(code))
		c.endConsultation(false)
		return
	}
	_ = won.sess.Ack(bg())
	if _, m, err := parseSDP(won.sess.InviteResponse.Body()); err == nil {
		y.SetRemote(SideB, m.addr)
	}
	c.b.bind(won.sess.InviteRequest.CallID().Value(), c)
	cs.target = won
	answered(sip.StatusOK, "OK")

	// Employee and target talk until someone decides.
	for !c.ended && cs.finish == "" && !cs.employeeGone && !cs.targetGone {
		select {
		case fn := <-c.inbox:
			fn()
		case <-won.sess.Context().Done():
			cs.targetGone = true
		case <-c.outsideContext().Done():
			c.hangup(c.outsideParty(), "hung up during a consultation")
		}
	}
	if c.ended {
		// The call ended under the consultation (the outside party hung
		// up, the API, a shutdown): the target, the hold tone and the
		// consultation's session must not outlive it.
		cs.holdTone()
		c.dropTarget(cs)
		y.Close()
		return
	}
	c.endConsultation(!cs.targetGone && (cs.finish == "complete" || cs.employeeGone))
}

// dropTarget hangs up the consultation's target, unless it hung up itself,
// and lets go of its dialog either way.
func (c *call) dropTarget(cs *consultState) {
	if cs.target == nil {
		return
	}
	if !cs.targetGone {
		ctx, cancel := context.WithTimeout(bg(), 5*time.Second)
		_ = cs.target.sess.Bye(ctx)
		cancel()
	}
	c.b.unbind(cs.target.sess.InviteRequest.CallID().Value())
}

// endConsultation either hands the call to the target (complete) or
// brings the employee back.
func (c *call) endConsultation(complete bool) {
	cs := c.consult
	cs.holdTone()
	defer cs.media.Close()
	if complete {
		out, err := c.outsideSDP()
		if err == nil {
			body, err := rewriteSDP(out, c.b.cfg.PhoneMediaIP, c.media.Port(SideB), cs.target.ver.next())
			if err == nil {
				res, err := c.reinviteDialog(cs.target.sess, remoteTarget(cs.target.sess), body)
				if err == nil && res.IsSuccess() {
					if _, m, err := parseSDP(res.Body()); err == nil {
						c.media.SetRemote(SideB, m.addr)
					}
					c.xfer = &xferState{transferorGone: cs.employeeGone}
					c.completeTransfer(cs.target, "attended", func(string, bool) {}, true)
					if c.outsideHeld {
						c.resumeOutside(res.Body())
					}
					c.xfer = nil
					return
				}
			}
		}
		// The target could not be moved: fall back to the employee.
	}
	c.dropTarget(cs)
	if cs.employeeGone {
		// The employee's side has already hung up.
		c.hangup(c.employeeParty(), "the employee left during a consultation")
		return
	}
	out, err := c.outsideSDP()
	if err != nil {
		return
	}
	leg, contact, _ := c.employeeLeg()
	body, err := rewriteSDP(out, c.b.cfg.PhoneMediaIP, c.media.Port(SideB), c.employeeVer().next())
	if err != nil {
		return
	}
	if res, err := c.reinviteDialog(leg, contact, body); err == nil && res.IsSuccess() {
		if _, m, err := parseSDP(res.Body()); err == nil {
			c.media.SetRemote(SideB, m.addr)
		}
	}
}
