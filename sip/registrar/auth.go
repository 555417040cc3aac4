package registrar

import (
	"net/netip"
	"strings"

	"callgate/sip/digest"
	"callgate/sip/guard"
	"callgate/sip/sipnet"

	"github.com/emiago/sipgo/sip"
)

// Reasons of authentication failures, as logged (reason=...) for fail2ban
// and audits.
const (
	ReasonWrongPassword = "wrong_password"  // unknown user or wrong password
	ReasonNotOwnAddress = "not_own_address" // right password, but for another extension than the one registered
	ReasonWrongPIN      = "wrong_pin"       // a desk phone dialled *77* with a PIN nobody has
)

// AuthorizeRequest authenticates a request from a phone other than REGISTER
// (an INVITE placing a call) with proxy digest (407), under the same ban
// rules as registrations. It returns the authenticated extension, or the
// response to send instead; both empty means drop without an answer.
func (r *Registrar) AuthorizeRequest(req *sip.Request, src netip.AddrPort) (string, *sip.Response) {
	if !r.Allowed(src.Addr()) {
		r.Stats.Refused.Add(1)
		return "", r.reply(req, sip.StatusForbidden, "Network Not Allowed")
	}
	if r.guard.Blocked(src) {
		r.Stats.Dropped.Add(1)
		return "", nil
	}
	auth := ""
	if h := req.GetHeader("Proxy-Authorization"); h != nil {
		auth = h.Value()
	}
	cseq := req.CSeq()
	callID := req.CallID()
	if cseq == nil || callID == nil {
		return "", r.reply(req, sip.StatusBadRequest, "Missing Mandatory Header")
	}
	reqID := r.requestID(string(*callID), cseq.SeqNo, string(req.Method))
	tr := sipnet.UDP // any transport but the browser's
	if strings.EqualFold(req.Transport(), string(sipnet.WS)) {
		tr = sipnet.WS
	}
	user, res := r.auth.Verify(string(req.Method), auth, reqID, r.secretsFor(tr))
	verdict := r.guard.Admit(src, user)
	if verdict == guard.Drop {
		r.Stats.Dropped.Add(1)
		return "", nil
	}
	switch res {
	case digest.OK:
		r.guard.Success(src, user)
		return user, nil
	case digest.Failed:
		return "", r.failed(req, src, user, ReasonWrongPassword, verdict)
	case digest.Malformed:
		if verdict == guard.Quiet {
			r.Stats.Dropped.Add(1)
			return "", nil
		}
		return "", r.reply(req, sip.StatusBadRequest, "Malformed Proxy-Authorization")
	}
	out := r.reply(req, sip.StatusProxyAuthRequired, "Proxy Authentication Required")
	for _, c := range r.auth.Challenges(res == digest.Stale) {
		out.AppendHeader(sip.NewHeader("Proxy-Authenticate", c))
	}
	return "", out
}

// failed counts a failed authentication and answers it (see failure).
func (r *Registrar) failed(req *sip.Request, src netip.AddrPort, user, reason string, v guard.Verdict) *sip.Response {
	o := r.failure(src, user, reason, v)
	return r.response(req, &o)
}

// AuthFailure counts a failed authentication of user from src toward the
// source's ban: wrong digest credentials, or a wrong desk PIN typed on an
// authenticated phone.
func (r *Registrar) AuthFailure(src netip.AddrPort, user, reason string) {
	r.Stats.AuthFailures.Add(1)
	r.guard.Failure(src, user, reason)
}

// Screen reports whether a request from src must be dropped before any
// handler sees it: it comes from a banned IP:port (ACKs excepted: they are
// never answered), or from a scanner's user agent.
func (r *Registrar) Screen(req *sip.Request, src netip.AddrPort) bool {
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	if req.Method != sip.ACK && r.guard.Blocked(src) {
		r.Stats.Dropped.Add(1)
		return true
	}
	if !r.conf().Scanners.Enabled() {
		return false
	}
	if h := req.GetHeader("User-Agent"); h != nil && r.conf().Scanners.Match(h.Value()) {
		user := ""
		if f := req.From(); f != nil {
			user = f.Address.User
		}
		r.scanner(src, user, h.Value())
		return true
	}
	return false
}

// scanner counts and logs (once a minute per IP) a request dropped for its
// user agent.
func (r *Registrar) scanner(src netip.AddrPort, user, ua string) {
	r.Stats.Scanners.Add(1)
	if r.conf().Log == nil || !r.quiet.Allow(src.Addr()) {
		return
	}
	if len(user) > guard.MaxUserLen {
		user = user[:guard.MaxUserLen]
	}
	if len(ua) > 128 {
		ua = ua[:128]
	}
	r.conf().Log.Warn("sip scanner dropped", "source", src.String(), "ip", src.Addr().String(), "user", user,
		"reason", "scanner", "user_agent", ua)
}
