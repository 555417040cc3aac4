package registrar

import (
	"hash/maphash"
	"net/netip"
	"strconv"

	"callgate/sip/digest"

	"github.com/emiago/sipgo/sip"
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
	claimed := ""
	if f := req.From(); f != nil {
		claimed = f.Address.User
	}
	if r.guard.Blocked(src, claimed) {
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
	reqID := maphash.String(r.seed, string(*callID)+"\x00"+strconv.FormatUint(uint64(cseq.SeqNo), 10)+string(req.Method))
	user, res := r.auth.Verify(string(req.Method), auth, reqID, r.secrets)
	switch res {
	case digest.OK:
		r.guard.Success(src, user)
		return user, nil
	case digest.Failed:
		r.Stats.AuthFailures.Add(1)
		r.guard.Failure(src, user)
		return "", r.reply(req, sip.StatusForbidden, "Wrong Credentials")
	case digest.Malformed:
		return "", r.reply(req, sip.StatusBadRequest, "Malformed Proxy-Authorization")
	}
	out := r.reply(req, sip.StatusProxyAuthRequired, "Proxy Authentication Required")
	for _, c := range r.auth.Challenges(res == digest.Stale) {
		out.AppendHeader(sip.NewHeader("Proxy-Authenticate", c))
	}
	return "", out
}
