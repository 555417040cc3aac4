package b2bua

import (
	"context"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// A request callgate passes into the other leg of a call (a re-INVITE for
// hold or a session refresh, an INFO) may be challenged there with 401 or
// 407. Relaying that answer is useless: the sender would see a challenge
// without its WWW-/Proxy-Authenticate, and could not answer it anyway,
// since the challenge is for callgate's request, not the sender's.
//
//   - When the leg is one callgate placed with an upstream account (the
//     VPBX side of an outbound call, a click-to-call or a transfer out),
//     callgate answers the challenge with that account's digest and passes
//     on the answer to the retried request, as it does for the first INVITE.
//   - Anywhere else (a phone challenging callgate, or the VPBX challenging
//     on a leg it placed itself, for which callgate holds no password), the
//     request is refused with 488 Not Acceptable Here: RFC 3261 §14.2's
//     answer for a session change that is not accepted, after which both
//     sides keep the session as it was (§14.1) and the call goes on (RFC
//     5057 §5.1: a 488 affects only the transaction, unlike 403 or 404,
//     which some user agents take as the end of the dialog).

// challengeRefused is the answer passed back for a challenge callgate
// cannot answer.
func challengeRefused() *sip.Response {
	return sip.NewResponse(sip.StatusNotAcceptableHere, "Not Acceptable Here")
}

func isChallenge(res *sip.Response) bool {
	return res != nil && (res.StatusCode == sip.StatusUnauthorized || res.StatusCode == sip.StatusProxyAuthRequired)
}

// answerChallenge handles a 401/407 res to sent, which went into dialog
// leg; it returns the response to pass back and the request as last sent.
func (c *call) answerChallenge(leg dialogLeg, sent *sip.Request, res *sip.Response) (*sip.Response, *sip.Request, error) {
	br := c.placed(leg)
	if br == nil || br.creds.Password == "" {
		c.b.log.Warn("in-dialog request challenged by a leg callgate has no credentials for; refused", "call_id", c.id,
			"method", string(sent.Method), "status", res.StatusCode)
		return challengeRefused(), sent, nil
	}
	retry, err := withDigest(sent, res, br.creds)
	if err != nil {
		c.b.log.Warn("in-dialog challenge unanswerable", "call_id", c.id, "method", string(sent.Method), "error", err)
		return challengeRefused(), sent, nil
	}
	ctx, cancel := context.WithTimeout(bg(), 10*time.Second)
	defer cancel()
	again, err := br.sess.Do(ctx, retry)
	if err != nil {
		return nil, retry, err
	}
	if isChallenge(again) {
		c.b.log.Warn("in-dialog request refused with the account's credentials", "call_id", c.id,
			"method", string(sent.Method), "user", br.creds.Username)
		return challengeRefused(), retry, nil
	}
	return again, retry, nil
}

// otherLeg is the leg inOtherDialog sends into.
func (c *call) otherLeg(fromCaller bool) dialogLeg {
	if fromCaller {
		return c.callee.sess
	}
	return c.callerLeg
}

// placed is the branch of leg when callgate placed it, nil when it is a
// dialog callgate answered.
func (c *call) placed(leg dialogLeg) *branch {
	for _, br := range append(c.started, c.callee) {
		if br != nil && br.sess != nil && dialogLeg(br.sess) == leg {
			return br
		}
	}
	return nil
}

// withDigest is sent again with credentials for res's challenge; the
// dialog gives it the next CSeq and the client a new Via branch.
func withDigest(sent *sip.Request, res *sip.Response, creds sipgo.AnswerOptions) (*sip.Request, error) {
	chName, authName := "WWW-Authenticate", "Authorization"
	if res.StatusCode == sip.StatusProxyAuthRequired {
		chName, authName = "Proxy-Authenticate", "Proxy-Authorization"
	}
	h := res.GetHeader(chName)
	if h == nil {
		return nil, errNoChallenge
	}
	chal, err := digest.ParseChallenge(h.Value())
	if err != nil {
		return nil, err
	}
	chal.Algorithm = strings.ToUpper(chal.Algorithm)
	cred, err := digest.Digest(chal, digest.Options{Method: string(sent.Method), URI: sent.Recipient.Addr(),
		Username: creds.Username, Password: creds.Password})
	if err != nil {
		return nil, err
	}
	retry := sent.Clone()
	retry.RemoveHeader("Via")
	retry.RemoveHeader(authName)
	retry.AppendHeader(sip.NewHeader(authName, cred.String()))
	return retry, nil
}

type challengeError string

func (e challengeError) Error() string { return string(e) }

const errNoChallenge = challengeError("challenge without WWW-Authenticate or Proxy-Authenticate")
