package b2bua

import (
	"context"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/sdp/v3"
)

// dialUpstream places the caller's call with the VPBX and connects it.
func (c *call) dialUpstream(route OutboundRoute, offer *sdp.SessionDescription) {
	br := &branch{target: Target{Extension: c.ev.Caller, Employee: route.Employee}, mediaIP: c.b.cfg.UpstreamMedia}
	body, err := c.calleeOffer(offer, br)
	if err != nil {
		c.fail(sip.StatusNotAcceptableHere, "Not Acceptable Here", ResultFailed, err.Error(), codecWarning(err)...)
		return
	}
	results := make(chan branchResult, 64)
	if err := c.inviteUpstream(br, route, body, results); err != nil {
		c.fail(sip.StatusServiceUnavailable, "Service Unavailable", ResultFailed, "upstream: "+err.Error())
		return
	}
	c.ev.Rung = []Target{br.target}
	c.emit(EventRinging) // the outgoing call's popup
	won, _ := c.await([]*branch{br}, results, 4*c.b.ringTimeout())
	if won && route.Lease != nil {
		route.Lease.Answered()
	}
	if won || c.ended {
		return
	}
	code := br.final
	if code < 400 {
		code = sip.StatusTemporarilyUnavailable
	}
	c.ev.HangupBy = "outside"
	c.fail(code, reasonPhrase(code), upstreamResult(br.final), "upstream answered "+itoa(br.final))
}

// upstreamResult is the result of a call whose leg to the VPBX ended
// unanswered with final.
func upstreamResult(final int) string {
	switch {
	case refusedStatus(final):
		return ResultBusy
	case final == 408 || final == 480 || final == 487 || final == 0:
		return ResultNoAnswer
	}
	return ResultFailed
}

// reinvite passes a re-INVITE (hold, unhold, session refresh) to the other
// leg with the SDP pointed at the relay, and its answer back.
func (c *call) reinvite(req *sip.Request, tx sip.ServerTransaction, fromCaller bool) {
	if c.callee == nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusRequestPending, "Request Pending", nil))
		return
	}
	fromSide, toSide := c.calleeSide, c.callerSide
	toIP, fromIP := c.callerIP, c.callee.mediaIP
	toVer, fromVer := &c.callerVer, &c.callee.ver
	if fromCaller {
		fromSide, toSide = toSide, fromSide
		toIP, fromIP = fromIP, toIP
		toVer, fromVer = fromVer, toVer
	}
	var body []byte
	offerProto := ""
	fromLeg := dialogLeg(c.callee.sess)
	if fromCaller {
		fromLeg = c.callerLeg
	}
	fromWeb := c.webOf(fromLeg)
	if fromWeb != nil && len(req.Body()) > 0 {
		plain, err := fromWeb.FromBrowser(req.Body())
		if err != nil {
			res := sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, "Not Acceptable Here", nil)
			for _, h := range browserWarning(err) {
				res.AppendHeader(h)
			}
			_ = tx.Respond(res)
			return
		}
		req.SetBody(plain)
	}
	if len(req.Body()) > 0 {
		s, m, err := parseSDP(req.Body())
		if err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, "Not Acceptable Here", nil))
			return
		}
		offerProto = m.proto
		if body, err = rewriteSDP(s, toIP, c.media.Port(toSide), toVer.next()); err != nil {
			res := sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, "Not Acceptable Here", nil)
			for _, h := range codecWarning(err) {
				res.AppendHeader(h)
			}
			_ = tx.Respond(res)
			return
		}
		c.media.SetRemote(fromSide, m.addr)
		if fromCaller == (c.ev.Direction != Inbound) && c.ev.Direction != Internal {
			c.outsideHeld = m.dir == "sendonly" || m.dir == "inactive"
		}
	}
	out := sip.NewRequest(sip.INVITE, sip.Uri{})
	if len(body) > 0 {
		out.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		out.SetBody(body)
	}
	res, sent, err := c.inOtherDialog(fromCaller, out)
	if err == nil && isChallenge(res) {
		res, sent, err = c.answerChallenge(c.otherLeg(fromCaller), sent, res)
	}
	if err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusServiceUnavailable, "Service Unavailable", nil))
		return
	}
	if !res.IsSuccess() {
		_ = tx.Respond(sip.NewResponseFromRequest(req, res.StatusCode, res.Reason, nil))
		return
	}
	_ = c.b.client.WriteRequest(ackFor(sent))
	var answer []byte
	if len(res.Body()) > 0 {
		s, m, err := parseSDP(res.Body())
		if err == nil {
			c.media.SetRemote(toSide, m.addr)
			answer, _ = rewriteSDPAs(s, fromIP, c.media.Port(fromSide), fromVer.next(), answerProfile(offerProto))
		}
	}
	if fromWeb != nil && len(answer) > 0 {
		if answer, err = fromWeb.ToBrowser(answer); err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, "Not Acceptable Here", nil))
			return
		}
	}
	ok := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", answer)
	ok.AppendHeader(sip.HeaderClone(&c.b.duaFor(req.Transport()).ContactHDR))
	if len(answer) > 0 {
		ok.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	_ = tx.Respond(ok)
}

// forward passes an in-dialog request (INFO) to the other leg.
func (c *call) forward(req *sip.Request, tx sip.ServerTransaction, fromCaller bool) {
	if c.callee == nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
		return
	}
	out := sip.NewRequest(req.Method, sip.Uri{})
	if ct := req.GetHeader("Content-Type"); ct != nil {
		out.AppendHeader(sip.NewHeader("Content-Type", ct.Value()))
	}
	out.SetBody(req.Body())
	res, sent, err := c.inOtherDialog(fromCaller, out)
	if err == nil && isChallenge(res) {
		res, _, err = c.answerChallenge(c.otherLeg(fromCaller), sent, res)
	}
	if err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusRequestTimeout, "Request Timeout", nil))
		return
	}
	_ = tx.Respond(sip.NewResponseFromRequest(req, res.StatusCode, res.Reason, nil))
}

// inOtherDialog sends req inside the dialog of the leg that did not send
// the request being handled, and returns the final response and the
// request as sent.
func (c *call) inOtherDialog(fromCaller bool, req *sip.Request) (*sip.Response, *sip.Request, error) {
	ctx, cancel := context.WithTimeout(bg(), 10*time.Second)
	defer cancel()
	var leg dialogLeg = c.callerLeg
	req.Recipient = c.callerContact
	if fromCaller {
		leg, req.Recipient = c.callee.sess, remoteTarget(c.callee.sess)
	}
	return c.doInDialog(ctx, leg, req)
}

// doInDialog sends a request in a dialog, its SDP and its answer's
// translated when the dialog is a browser's.
func (c *call) doInDialog(ctx context.Context, leg dialogLeg, req *sip.Request) (*sip.Response, *sip.Request, error) {
	w := c.webOf(leg)
	if w != nil && len(req.Body()) > 0 {
		body, err := w.ToBrowser(req.Body())
		if err != nil {
			return nil, req, err
		}
		req.SetBody(body)
	}
	res, err := leg.Do(ctx, req)
	if err == nil && res.IsSuccess() {
		fromBrowserAnswer(w, res)
	}
	return res, req, err
}

// ackFor builds the ACK for a 2xx to a re-INVITE we sent in a dialog.
func ackFor(inv *sip.Request) *sip.Request {
	ack := sip.NewRequest(sip.ACK, inv.Recipient)
	for _, name := range []string{"From", "To", "Call-ID", "Route", "Max-Forwards"} {
		for _, h := range inv.GetHeaders(name) {
			ack.AppendHeader(sip.HeaderClone(h))
		}
	}
	ack.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.ACK})
	ack.AppendHeader(sip.NewHeader("Content-Length", "0"))
	ack.SetTransport(inv.Transport())
	ack.SetDestination(inv.Destination())
	ack.Laddr = inv.Laddr
	return ack
}

func reasonPhrase(code int) string {
	switch code {
	case 404:
		return "Not Found"
	case 408:
		return "Request Timeout"
	case 480:
		return "Temporarily Unavailable"
	case 486:
		return "Busy Here"
	case 487:
		return "Request Terminated"
	case 503:
		return "Service Unavailable"
	case 600:
		return "Busy Everywhere"
	case 603:
		return "Decline"
	}
	return "Call Failed"
}
