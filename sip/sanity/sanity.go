// Package sanity checks SIP messages before anything in callgate reads
// them, the way Kamailio's sanity module does: sipgo parses whatever it can
// and only insists on Via and CSeq, so a request without To or Call-ID, or
// a 2xx without Contact, would otherwise reach code that dereferences those
// headers. Request tells what is wrong with a request and Reply builds the
// answer RFC 3261 asks for (400 naming the problem, 505 for another SIP
// version), or nil where answering is impossible or would only help a
// flood; Response tells whether a response is fit to act on.
//
// What sipgo v1.7.2 does on its own, and so what is left to this package:
// its parser takes any "SIP/x.y" (and answers in the request's version);
// it refuses a negative or non-numeric Content-Length, and a datagram
// shorter than its Content-Length, by dropping the message (a TCP stream
// waits for the rest, up to 64 KiB, then closes); its transaction layer
// answers a request without Via or CSeq with a stateless 400 and passes
// everything else on, To, From, Call-ID and Max-Forwards included or not.
// Its dialog code then reads CSeq and Contact without checking, which is
// why responses are checked too before a dialog is built from them.
package sanity

import (
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Version is the only SIP version callgate speaks.
const Version = "SIP/2.0"

// Problem is what is wrong with a message.
type Problem struct {
	// Status is the response code the request deserves (400, 416, 505).
	Status int
	// Reason is the reason phrase, naming the problem ("Missing Call-ID").
	Reason string
	// Silent: the request must not be answered (no Via to answer along,
	// or an ACK, which is never answered).
	Silent bool
}

func (p *Problem) Error() string { return "malformed SIP message: " + p.Reason }

// counts of the headers a message must carry exactly once (Via: at least once).
type counts struct {
	via, from, to, callID, cseq, maxFwd, contentLength, contact int
	cseqHdr                                                     *sip.CSeqHeader
	cl                                                          *sip.ContentLengthHeader
}

// count walks the headers once: REGISTER bursts pass through here, so no
// per-name lookups and no allocation.
func count(hs []sip.Header) counts {
	var c counts
	for _, h := range hs {
		switch h := h.(type) {
		case *sip.ViaHeader:
			c.via++
		case *sip.FromHeader:
			c.from++
		case *sip.ToHeader:
			c.to++
		case *sip.CallIDHeader:
			c.callID++
		case *sip.CSeqHeader:
			c.cseq++
			c.cseqHdr = h
		case *sip.MaxForwardsHeader:
			c.maxFwd++
		case *sip.ContentLengthHeader:
			c.contentLength++
			c.cl = h
		case *sip.ContactHeader:
			c.contact++
		}
	}
	return c
}

// Request checks what every handler relies on: the SIP version, the
// mandatory headers of RFC 3261 §8.1.1 once each, a CSeq naming the
// request's method, a Content-Length that matches the body and a SIP URI.
// It returns nil for a sane request.
func Request(req *sip.Request) *Problem {
	c := count(req.Headers())
	p := requestProblem(req, c)
	if p != nil && (c.via == 0 || req.IsAck()) {
		p.Silent = true
	}
	return p
}

func requestProblem(req *sip.Request, c counts) *Problem {
	if !strings.EqualFold(req.SipVersion, Version) {
		return &Problem{Status: sip.StatusVersionNotSupported, Reason: "Version Not Supported"}
	}
	if !token(string(req.Method)) {
		return bad("Bad Method")
	}
	if p := missing(c); p != nil {
		return p
	}
	if c.maxFwd == 0 {
		return bad("Missing Max-Forwards")
	}
	if c.maxFwd > 1 {
		return bad("Duplicate Max-Forwards")
	}
	if m := c.cseqHdr.MethodName; !strings.EqualFold(string(m), string(req.Method)) {
		return bad("CSeq Method Does Not Match")
	}
	if p := length(req, c); p != nil {
		return p
	}
	switch strings.ToLower(req.Recipient.Scheme) {
	case "sip", "sips":
	default:
		return &Problem{Status: statusUnsupportedURIScheme, Reason: "Unsupported URI Scheme"}
	}
	if req.Recipient.Host == "" {
		return bad("Bad Request-URI")
	}
	return nil
}

// missing reports a mandatory header that is absent or repeated.
func missing(c counts) *Problem {
	for _, h := range []struct {
		name string
		n    int
	}{{"Via", c.via}, {"From", c.from}, {"To", c.to}, {"Call-ID", c.callID}, {"CSeq", c.cseq}} {
		if h.n == 0 {
			return bad("Missing " + h.name)
		}
		if h.n > 1 && h.name != "Via" {
			return bad("Duplicate " + h.name)
		}
	}
	return nil
}

// length checks Content-Length against the body: sipgo cuts a datagram's
// body to Content-Length and rejects a shorter one, so a mismatch left here
// means something rewrote the message, or two Content-Lengths disagreed.
func length(m sip.Message, c counts) *Problem {
	if c.contentLength > 1 {
		return bad("Duplicate Content-Length")
	}
	if c.cl != nil && int(*c.cl) != len(m.Body()) {
		return bad("Bad Content-Length")
	}
	return nil
}

func bad(reason string) *Problem { return &Problem{Status: sip.StatusBadRequest, Reason: reason} }

// Reply is the answer to a request with problem p, or nil when none may be
// sent. It answers in SIP/2.0 whatever version the request spoke.
func Reply(req *sip.Request, p *Problem) *sip.Response {
	if p == nil || p.Silent {
		return nil
	}
	res := sip.NewResponseFromRequest(req, p.Status, p.Reason, nil)
	res.SipVersion = Version
	if p.Status == statusUnsupportedURIScheme {
		res.AppendHeader(sip.NewHeader("Unsupported", req.Recipient.Scheme))
	}
	return res
}

// Response checks a response before a client acts on it: version, the
// mandatory headers, Content-Length, and for a 2xx to INVITE the Contact
// and To tag a dialog is built from (RFC 3261 §12.1.2, §13.3.1.4). A
// response that fails is to be dropped.
func Response(res *sip.Response) *Problem {
	if !strings.EqualFold(res.SipVersion, Version) {
		return &Problem{Status: sip.StatusVersionNotSupported, Reason: "Version Not Supported", Silent: true}
	}
	c := count(res.Headers())
	p := missing(c)
	if p == nil {
		p = length(res, c)
	}
	if p == nil && res.IsSuccess() && strings.EqualFold(string(c.cseqHdr.MethodName), string(sip.INVITE)) {
		switch {
		case c.contact == 0:
			p = bad("Missing Contact")
		case !res.To().Params.Has("tag"):
			p = bad("Missing To tag")
		}
	}
	if p != nil {
		p.Silent = true // responses are never answered
	}
	return p
}

// statusUnsupportedURIScheme is RFC 3261's 416, which sipgo has no name for.
const statusUnsupportedURIScheme = 416

// CallID is m's Call-ID, "" when it has none (for logs, where the message
// may be the malformed one).
func CallID(m sip.Message) string {
	if h := m.CallID(); h != nil {
		return h.Value()
	}
	return ""
}

// token: a method is an RFC 3261 §25.1 token.
func token(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isToken(s[i]) {
			return false
		}
	}
	return true
}
