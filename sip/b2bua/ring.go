package b2bua

// Forking: an inbound or internal call rings every registered device of
// each step's targets at once, step after step, and the first answer wins.

import (
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/sdp/v3"
)

// calleeOffer is the caller's SDP pointed at the relay port facing the callee.
func (c *call) calleeOffer(offer *sdp.SessionDescription, br *branch) ([]byte, error) {
	return rewriteSDP(offer, br.mediaIP, c.media.Port(c.calleeSide), br.ver.next())
}

// ring forks to every registered device of each step's targets, step after
// step, and connects the first that answers.
func (c *call) ring(groups [][]Target, timeout time.Duration, offer *sdp.SessionDescription, stepTimeouts ...time.Duration) {
	if timeout <= 0 {
		timeout = c.b.ringTimeout()
	}
	busy := 0
	total := 0
	var all []*branch
	for step, g := range groups {
		results := make(chan branchResult, 64)
		stepTimeout := timeout
		if step < len(stepTimeouts) && stepTimeouts[step] > 0 {
			stepTimeout = stepTimeouts[step]
		}
		c.ev.Rung = append(c.ev.Rung, g...)
		display := c.ev.Caller
		if c.internalFrom != "" {
			display = c.internalFrom
		}
		branches, err := c.dialPhones(g, c.ev.Caller, display, func(br *branch) ([]byte, error) { return c.calleeOffer(offer, br) }, results)
		if err != nil {
			c.fail(sip.StatusNotAcceptableHere, "Not Acceptable Here", ResultFailed, err.Error(), codecWarning(err)...)
			return
		}
		if len(branches) == 0 {
			continue
		}
		all = append(all, branches...)
		total += len(branches)
		c.emit(EventRinging)
		won, b := c.await(branches, results, stepTimeout)
		busy += b
		if won || c.ended {
			return
		}
	}
	switch {
	case total == 0:
		c.fail(sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", ResultNoAnswer, "no registered phone")
	case busy == total:
		// Every phone refused: pass on a refusal they agree on (603 Decline,
		// 600 Busy Everywhere), else 486.
		code := all[0].final
		for _, br := range all {
			if br.final != code {
				code = sip.StatusBusyHere
			}
		}
		c.fail(code, reasonPhrase(code), ResultBusy, "refused")
	default:
		c.fail(sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", ResultNoAnswer, "no answer")
	}
}

// await runs the ringing phase of one group. It returns whether a branch
// answered (the call is then in progress and ran to its end) and how many
// branches answered busy.
func (c *call) await(branches []*branch, results chan branchResult, timeout time.Duration) (bool, int) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	pending := len(branches)
	busy := 0
	ringing, early := false, false
	for pending > 0 {
		select {
		case fn := <-c.inbox:
			fn()
			if c.ended {
				c.stopRinging(branches, nil, results, pending)
				return false, busy
			}
		case <-c.callerLeg.Context().Done():
			// The caller hung up (CANCEL, or BYE from a click-to-call's
			// employee) while the other side rang.
			c.stopRinging(branches, nil, results, pending)
			c.ev.Result, c.ev.HangupBy, c.ev.Code = ResultAbandoned, c.party("caller"), sip.StatusRequestTerminated
			c.finish()
			return false, busy
		case <-timer.C:
			c.stopRinging(branches, nil, results, pending)
			return false, busy
		case r := <-results:
			if !r.end {
				if r.res.StatusCode == 183 && !early && len(r.res.Body()) > 0 && c.earlyMedia(r.res) {
					early, ringing = true, true
				} else if !ringing && (r.res.StatusCode == 180 || r.res.StatusCode == 183) {
					ringing = true
					if c.caller != nil {
						_ = c.caller.Respond(sip.StatusRinging, "Ringing", nil)
					}
				}
				continue
			}
			if r.failover && c.failover(r, results) {
				continue // the same branch, at the VPBX's next address
			}
			pending--
			if !c.branchEnded(r) {
				if refusedStatus(r.br.final) {
					busy++
				}
				continue
			}
			c.stopRinging(branches, r.br, results, pending)
			c.connect(r.br)
			return true, busy
		}
	}
	return false, busy
}
