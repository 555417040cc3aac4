package registrar

import (
	"net/netip"
	"strconv"
	"strings"
)

// appendAnswer writes o as the response to fr, from src, the way the full
// path's sipgo response would read.
func (r *Registrar) appendAnswer(b []byte, fr *fastRegister, o *outcome, src netip.AddrPort) []byte {
	b = append(b, "SIP/2.0 "...)
	b = strconv.AppendInt(b, int64(o.code), 10)
	b = append(b, ' ')
	b = append(b, o.reason...)
	b = append(b, "\r\n"...)
	for i, v := range fr.vias[:fr.nvia] {
		b = append(b, "Via: "...)
		if i == 0 && fr.rport {
			// RFC 3581 §4: rport gets the source port, received the address.
			b = appendRport(b, v, src)
		} else {
			b = append(b, v...)
		}
		b = append(b, "\r\n"...)
	}
	b = append(append(append(b, "From: "...), fr.from...), "\r\n"...)
	b = append(append(b, "To: "...), fr.to...)
	if !fr.toTagged {
		b = append(b, ";tag="...)
		b = strconv.AppendUint(b, r.requestID(fr.callID, fr.cseq, "REGISTER"), 36)
	}
	b = append(append(append(b, "\r\nCall-ID: "...), fr.callIDV...), "\r\n"...)
	b = append(append(append(b, "CSeq: "...), fr.cseqV...), "\r\n"...)
	if name := r.conf().ServerName; name != "" {
		b = append(append(append(b, "Server: "...), name...), "\r\n"...)
	}
	if o.challenge {
		b = r.auth.AppendChallenges(b, "WWW-Authenticate", o.stale)
	}
	if o.code == 423 {
		b = append(b, "Min-Expires: "...)
		b = strconv.AppendInt(b, int64(o.minExpires.Seconds()), 10)
		b = append(b, "\r\n"...)
	}
	if o.code == 200 {
		for i := range o.bindings {
			b = appendContact(append(b, "Contact: "...), &o.bindings[i], o.now)
			b = append(b, "\r\n"...)
		}
		b = appendDate(append(b, "Date: "...), o.now)
		b = append(b, "\r\n"...)
	}
	return append(b, "Content-Length: 0\r\n\r\n"...)
}

// appendRport writes Via v with its valueless rport filled in and received
// added at the end, where sipgo's parameter list puts them.
func appendRport(b []byte, v string, src netip.AddrPort) []byte {
	sentBy, params, _ := strings.Cut(v, ";")
	b = append(b, sentBy...)
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		b = append(append(b, ';'), p...)
		if p == "rport" {
			b = strconv.AppendUint(append(b, '='), uint64(src.Port()), 10)
		}
	}
	b = append(b, ";received="...)
	return src.Addr().AppendTo(b)
}

// fastBuf is the fast path's scratch, pooled per datagram.
type fastBuf struct {
	req fastRegister
	out []byte
}

// handleFast answers a plainly written REGISTER from src without sipgo,
// into b.out. handled is false when data is for the full path; answer is
// false where no answer may go.
func (r *Registrar) handleFast(data []byte, src Source, b *fastBuf) (answer, handled bool) {
	fr := &b.req
	*fr = fastRegister{}
	b.out = b.out[:0]
	if !parseFast(string(data), fr) {
		return false, false
	}
	if fr.userAgent != "" && r.conf().Scanners.Match(fr.userAgent) {
		return false, false // the full path drops and logs it
	}
	r.Stats.FastPath.Add(1)
	o := r.decide(&fr.register, src)
	if o.silent {
		return false, true
	}
	b.out = r.appendAnswer(b.out, fr, &o, src.Addr)
	return true, true
}
