package b2bua

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"callgate/sip/sipnet"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/google/uuid"
)

// allowed are the methods callgate takes inside a call (REFER: transfers).
const allowed = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER"

// branch is one outgoing INVITE (to a phone or to the VPBX).
type branch struct {
	target  Target
	sess    *sipgo.DialogClientSession
	cancel  context.CancelFunc
	ver     sdpVersion
	mediaIP netip.Addr
	done    bool
	final   int // final status when it did not answer
	// creds answer the VPBX's challenges in this dialog (empty for phones).
	creds sipgo.AnswerOptions
	// up is set on a branch to the VPBX: its addresses and where the
	// INVITE is.
	up *upstreamTry
	// web is the media leg of a branch to a browser.
	web WebRTCLeg
}

// upstreamTry is an INVITE to the VPBX going through the VPBX's
// addresses in order (RFC 3263 §4.3): the next is tried when one gives no
// answer within Config.Failover, answers 503, or cannot be sent to.
type upstreamTry struct {
	route   OutboundRoute
	body    []byte
	targets []sipnet.Target
	next    int           // index of the next address to try
	at      sipnet.Target // where the current INVITE went
}

type branchResult struct {
	br  *branch
	res *sip.Response // provisional or final
	err error         // WaitAnswer's result when final
	end bool
	// failover: the VPBX's address gave no answer in time (or 503) and
	// another is left to try; see call.failover.
	failover bool
}

// invite starts one branch; its progress arrives on results.
func (c *call) invite(br *branch, req *sip.Request, auth sipgo.AnswerOptions, results chan<- branchResult) error {
	ctx, cancel := context.WithCancel(context.Background())
	br.cancel = cancel
	br.creds = sipgo.AnswerOptions{Username: auth.Username, Password: auth.Password}
	if !slices.Contains(c.started, br) {
		c.started = append(c.started, br)
	}
	c.b.fitTransport(req)
	sess, err := c.b.duaFor(req.Transport()).WriteInvite(ctx, req)
	if err != nil {
		cancel()
		return err
	}
	br.sess = sess
	callID := req.CallID().Value()
	peer := phonePeer(req.Destination())
	if br.up != nil {
		peer = dialogPeer{upstream: true}
	}
	c.b.trackDialog(callID, tagOf(req.From().Params), "", peer)
	c.b.bind(callID, c)
	// A branch to the VPBX with another address left gives up on this one
	// when nothing at all comes back within the failover time.
	canFailover := br.up != nil && br.up.next < len(br.up.targets)
	var answered, gaveUp atomic.Bool
	auth.OnResponse = func(res *sip.Response) error {
		answered.Store(true)
		if res.IsProvisional() || res.IsSuccess() {
			// Before WaitAnswer returns: the callee may send a request as
			// soon as it has our ACK.
			c.b.dialogAnswered(callID, res)
		}
		if res.IsProvisional() {
			results <- branchResult{br: br, res: res}
		}
		return nil
	}
	// A malformed response reaches neither the handler above nor the dialog.
	auth.OnResponse = c.checkFirst(auth.OnResponse)
	wctx, stop := context.WithCancelCause(ctx)
	var timer *time.Timer
	if canFailover {
		timer = time.AfterFunc(c.b.cfg.Failover, func() {
			if !answered.Load() {
				gaveUp.Store(true)
				// Without an answer there is nothing to CANCEL (RFC 3261
				// §9.1): the transaction is dropped at once.
				stop(sipgo.WaitAnswerForceCancelErr)
			}
		})
	}
	go func() {
		err := errPanicked
		defer func() {
			if r := recover(); r != nil {
				c.b.notePanic(r, "call_id", c.id)
			}
			failover := canFailover && ctx.Err() == nil && (gaveUp.Load() || isStatus(err, sip.StatusServiceUnavailable))
			results <- branchResult{br: br, res: sess.InviteResponse, err: err, end: true, failover: failover}
		}()
		err = sess.WaitAnswer(wctx, auth)
		if err == nil {
			fromBrowserAnswer(br.web, sess.InviteResponse)
		}
		if timer != nil {
			timer.Stop()
		}
		stop(nil) // the wait is over; the dialog keeps its own context
	}()
	return nil
}

// isStatus reports whether err is a final answer with code.
func isStatus(err error, code int) bool {
	var de *sipgo.ErrDialogResponse
	return errors.As(err, &de) && de.Res.StatusCode == code
}

func (c *call) newRequest(uri sip.Uri, fromUser, fromDisplay, fromHost, toUser, toHost string, transport sipnet.Transport, dest, local string, body []byte) *sip.Request {
	req := sip.NewRequest(sip.INVITE, uri)
	req.SetTransport(transport.Via())
	req.SetDestination(dest)
	c.b.peers.hold(c, dest)
	from := &sip.FromHeader{DisplayName: fromDisplay, Address: sip.Uri{Scheme: "sip", User: fromUser, Host: fromHost}}
	from.Params.Add("tag", sip.GenerateTagN(12))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: toUser, Host: toHost}})
	cid := sip.CallIDHeader(uuid.NewString())
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.NewHeader("Allow", allowed))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(body)
	c.b.sendFrom(req, local)
	return req
}

// inviteUpstream starts br: an INVITE with body to route's number through
// the VPBX, from route's account, whose credentials answer the VPBX's
// challenges, at the first of the VPBX's addresses it can be sent to.
func (c *call) inviteUpstream(br *branch, route OutboundRoute, body []byte, results chan<- branchResult) error {
	if c.b.cfg.Upstream == nil {
		return errors.New("no VPBX configured")
	}
	ctx, cancel := context.WithTimeout(bg(), 5*time.Second)
	targets, err := c.b.cfg.Upstream.Targets(ctx)
	cancel()
	if err != nil {
		return err
	}
	br.up = &upstreamTry{route: route, body: body, targets: targets}
	return c.sendUpstream(br, results)
}

// sendUpstream sends br's INVITE to the next of the VPBX's addresses
// that takes it.
func (c *call) sendUpstream(br *branch, results chan<- branchResult) error {
	up, route := br.up, br.up.route
	domain := c.b.cfg.Domain
	uri := sip.Uri{Scheme: "sip", User: route.Number, Host: domain}
	authUser := cmp.Or(route.Account.AuthUser, route.Account.User)
	err := errors.New("the VPBX has no address")
	for up.next < len(up.targets) {
		up.at = up.targets[up.next]
		up.next++
		req := c.newRequest(uri, route.Account.User, "", domain, route.Number, domain, up.at.Transport, up.at.Addr.String(), "", up.body)
		if err = c.invite(br, req, sipgo.AnswerOptions{Username: authUser, Password: route.Account.Password}, results); err == nil {
			return nil
		}
		c.b.cfg.Upstream.Unreachable(up.at)
		c.b.log.Warn("INVITE to the VPBX not sent: trying its next address", "call_id", c.id, "target", up.at.String(), "error", err)
	}
	return err
}

// failover moves a branch to the VPBX on to the VPBX's next address after
// r, the end of its INVITE at the current one, said that address gave no
// answer in time or 503. It reports false when the INVITE could not be
// sent anywhere else: r then stands as the branch's result.
func (c *call) failover(r branchResult, results chan<- branchResult) bool {
	br := r.br
	c.b.unbind(br.sess.InviteRequest.CallID().Value())
	br.cancel()
	c.b.cfg.Upstream.Unreachable(br.up.at)
	c.b.log.Warn("the VPBX's address did not take the INVITE: trying its next address", "call_id", c.id,
		"target", br.up.at.String(), "next", br.up.targets[br.up.next].String(), "error", fmt.Sprint(r.err))
	return c.sendUpstream(br, results) == nil
}

// dialPhones sends an INVITE to every registered device of targets, from
// fromUser with a display name, with the body offer builds per branch.
func (c *call) dialPhones(targets []Target, fromUser, display string, offer func(*branch) ([]byte, error), results chan<- branchResult) ([]*branch, error) {
	var branches []*branch
	for _, t := range targets {
		for _, bnd := range c.b.loc.Lookup(t.Extension, time.Now()) {
			var uri sip.Uri
			if err := sip.ParseUri(bnd.Contact, &uri); err != nil {
				continue
			}
			br := &branch{target: t, mediaIP: c.b.cfg.PhoneMediaIP}
			body, err := offer(br)
			if err != nil {
				return branches, err
			}
			if bnd.Transport.OverHTTP() {
				if body, err = c.browserOffer(br, body); err != nil {
					c.b.log.Warn("browser phone not rung", "call_id", c.id, "aor", t.Extension, "error", err)
					continue
				}
			}
			fromHost := c.b.cfg.Domain
			if c.internalFrom != "" && c.b.cfg.LocalDomain != "" {
				fromHost = c.b.cfg.LocalDomain
			}
			req := c.newRequest(uri, fromUser, display, fromHost, t.Extension, uri.Host, bnd.Transport, bnd.Source, bnd.Local, body)
			if br.web != nil {
				// The console matches the ringing phone with the call's card.
				req.AppendHeader(sip.NewHeader(CallHeader, c.id))
			}
			if err := c.invite(br, req, sipgo.AnswerOptions{}, results); err != nil {
				c.b.log.Warn("invite to phone failed", "call_id", c.id, "aor", t.Extension, "error", err)
				continue
			}
			if br.web != nil {
				c.setWeb(br.sess, br.web)
			}
			branches = append(branches, br)
		}
	}
	return branches, nil
}

// branchEnded takes a branch's final result and reports whether it
// answered. When it did not, br.final is the status it failed with (408
// when no final response came) and its dialog is let go.
func (c *call) branchEnded(r branchResult) bool {
	r.br.done = true
	if r.err == nil {
		return true
	}
	r.br.final = sip.StatusRequestTimeout
	var de *sipgo.ErrDialogResponse
	if errors.As(r.err, &de) {
		r.br.final = de.Res.StatusCode
	}
	c.b.unbind(r.br.sess.InviteRequest.CallID().Value())
	return false
}

// refusedStatus says whether a branch's final status refuses the call
// (busy, declined) rather than leaving it unanswered.
func refusedStatus(code int) bool { return code == 486 || code == 600 || code == 603 }

// stopRinging cancels every branch but winner that is still ringing, and
// ends with ACK and BYE those of the pending ones that answer all the same
// (a 200 crossing the CANCEL).
func (c *call) stopRinging(branches []*branch, winner *branch, results chan branchResult, pending int) {
	for _, br := range branches {
		if br != winner && !br.done {
			br.cancel()
		}
	}
	c.drainLosers(results, pending)
}

// drainLosers ACKs and BYEs branches that answer after losing.
func (c *call) drainLosers(results chan branchResult, n int) {
	go func() {
		defer c.recoverQuiet()
		for i := 0; i < n; i++ {
			r := <-results
			if !r.end {
				i--
				continue
			}
			if r.err == nil && r.br.sess != nil {
				_ = r.br.sess.Ack(bg())
				_ = r.br.sess.Bye(bg())
			}
			c.b.unbind(r.br.sess.InviteRequest.CallID().Value())
		}
	}()
}

// browserOffer gives a branch to a browser its media leg and the offer in
// WebRTC form.
func (c *call) browserOffer(br *branch, plain []byte) ([]byte, error) {
	w, err := c.newWebLeg()
	if err != nil {
		return nil, err
	}
	br.web = w
	return w.ToBrowser(plain)
}
