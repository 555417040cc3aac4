package registrar

import (
	"errors"
	"hash/maphash"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"callgate/sip/digest"
	"callgate/sip/guard"
	"callgate/sip/location"

	"github.com/emiago/sipgo/sip"
)

// register is a REGISTER as the registrar reads it, whichever parser read
// it: sipgo's (readRequest) or the UDP fast path's (parseFast).
type register struct {
	callID     string
	cseq       uint32
	toUser     string
	auth       string // the Authorization value, "" without one
	hasExpires bool
	badExpires bool
	expires    uint64 // the Expires header's seconds
	contacts   []contactReq
	userAgent  string
}

// contactReq is one Contact of a REGISTER.
type contactReq struct {
	uri        string
	wildcard   bool
	invalid    bool  // a Contact the parser could not read
	expires    int64 // the expires parameter, -1 without one
	badExpires bool
	instance   string // +sip.instance as sent, quotes and brackets included
	regID      uint32
	badRegID   bool // a reg-id that is not a positive number
}

// parseRegID reads a reg-id parameter (RFC 5626: a positive number).
func parseRegID(v string) (uint32, bool) {
	n, err := strconv.ParseUint(v, 10, 32)
	return uint32(n), err != nil || n == 0
}

// outcome is the registrar's answer, before either parser's writer puts it
// into a response.
type outcome struct {
	silent     bool // no answer at all
	code       int
	reason     string
	challenge  bool // WWW-Authenticate, with a fresh nonce
	stale      bool
	minExpires time.Duration      // for 423
	bindings   []location.Binding // for 200: the AOR's bindings now
	now        time.Time
}

func answer(code int, reason string) outcome { return outcome{code: code, reason: reason} }

// requestID identifies a request apart from its retransmissions, for the
// digest nonce-count check, without building a string.
func (r *Registrar) requestID(callID string, cseq uint32, method string) uint64 {
	var h maphash.Hash
	h.SetSeed(r.seed)
	h.WriteString(callID)
	var b [12]byte
	h.Write(strconv.AppendUint(append(b[:0], 0), uint64(cseq), 10))
	h.WriteString(method)
	return h.Sum64()
}

// decide authenticates a sane REGISTER from src and applies it.
func (r *Registrar) decide(reg *register, src Source) outcome {
	if !r.Allowed(src.Addr.Addr()) {
		r.Stats.Refused.Add(1)
		return answer(sip.StatusForbidden, "Network Not Allowed")
	}
	if r.guard.Blocked(src.Addr) {
		r.Stats.Dropped.Add(1)
		return outcome{silent: true}
	}
	user, res, pass := r.auth.VerifyTag("REGISTER", reg.auth, r.requestID(reg.callID, reg.cseq, "REGISTER"), r.secretsFor(src.Transport))
	verdict := r.guard.Admit(src.Addr, user)
	if verdict == guard.Drop {
		r.Stats.Dropped.Add(1)
		return outcome{silent: true}
	}
	switch res {
	case digest.NoCredentials, digest.Stale:
		o := answer(sip.StatusUnauthorized, "Unauthorized")
		o.challenge, o.stale = true, res == digest.Stale
		return o
	case digest.Malformed:
		if verdict == guard.Quiet {
			r.Stats.Dropped.Add(1)
			return outcome{silent: true}
		}
		return answer(sip.StatusBadRequest, "Malformed Authorization")
	case digest.Failed:
		return r.failure(src.Addr, user, ReasonWrongPassword, verdict)
	}
	if user != reg.toUser {
		// A phone may only register its own extension. The answer is the
		// one a wrong password gets, so that it does not tell a guesser
		// that the password was right.
		return r.failure(src.Addr, user, ReasonNotOwnAddress, verdict)
	}
	r.guard.Success(src.Addr, user)
	r.Stats.Registers.Add(1)
	return r.bind(reg, src, user, pass)
}

// bind applies RFC 3261 §10.3 steps 6-8 to aor's bindings; pass tags the
// bindings with the browser phone's pass that authenticated them.
func (r *Registrar) bind(reg *register, src Source, aor, pass string) outcome {
	now := r.now()
	cfg := r.conf()
	if reg.badExpires {
		return answer(sip.StatusBadRequest, "Invalid Expires")
	}
	hdrExpires := cfg.DefaultExpires
	if reg.hasExpires {
		hdrExpires = time.Duration(reg.expires) * time.Second
	}
	wildcard, n := false, 0
	var exps [8]time.Duration // one per contact, without allocating for the usual few
	expOf := exps[:0]
	for i := range reg.contacts {
		c := &reg.contacts[i]
		switch {
		case c.invalid:
			return answer(sip.StatusBadRequest, "Invalid Contact")
		case c.wildcard:
			wildcard = true
			expOf = append(expOf, 0)
			continue
		case c.badExpires:
			return answer(sip.StatusBadRequest, "Invalid Contact expires")
		}
		exp := hdrExpires
		if c.expires >= 0 {
			exp = time.Duration(c.expires) * time.Second
		}
		if exp > 0 && exp < cfg.MinExpires {
			o := answer(sip.StatusIntervalToBrief, "Interval Too Brief")
			o.minExpires = cfg.MinExpires
			return o
		}
		exp = min(exp, cfg.MaxExpires)
		c.instance = strings.Trim(c.instance, `"<>`)
		if !instanceLike(c.instance) {
			c.instance = "" // not echoed, not used to tell devices apart
		}
		if c.instance == "" {
			c.regID = 0
		} else if c.badRegID {
			return answer(sip.StatusBadRequest, "Invalid reg-id")
		}
		expOf = append(expOf, exp)
		n++
	}
	if wildcard && (n > 0 || hdrExpires != 0 || !reg.hasExpires) {
		return answer(sip.StatusBadRequest, "Wildcard Contact Needs Expires: 0 Alone")
	}
	ua := reg.userAgent
	if len(ua) > 128 {
		ua = ua[:128]
	}
	var cur []location.Binding
	var err error
	if wildcard || n > 0 {
		cur, err = r.loc.Modify(aor, now, func(cur []location.Binding) ([]location.Binding, error) {
			if wildcard {
				for _, b := range cur {
					if b.CallID == reg.callID && b.CSeq > reg.cseq {
						return nil, errOutOfOrder
					}
				}
				return nil, nil
			}
			for k, c := range reg.contacts {
				nb := location.Binding{AOR: aor, Contact: c.uri, Instance: c.instance, RegID: c.regID,
					Transport: src.Transport, Expires: now.Add(expOf[k]), CSeq: reg.cseq, Since: now, Pass: pass}
				i := indexOf(cur, &nb)
				if i >= 0 {
					old := &cur[i]
					if old.CallID == reg.callID && old.CSeq > reg.cseq {
						return nil, errOutOfOrder
					}
					if expOf[k] == 0 {
						cur = append(cur[:i], cur[i+1:]...)
						continue
					}
					nb.Since = old.Since
					renew(&nb, old, reg.callID, ua, src)
					cur[i] = nb
					continue
				}
				if expOf[k] > 0 {
					renew(&nb, &location.Binding{}, reg.callID, ua, src)
					cur = append(cur, nb)
				}
			}
			for len(cur) > cfg.MaxContacts {
				cur = dropOldest(cur)
			}
			return cur, nil
		})
		if errors.Is(err, errOutOfOrder) {
			return answer(sip.StatusInternalServerError, "Out Of Order CSeq")
		}
	} else {
		cur = r.loc.Lookup(aor, now)
	}
	o := answer(sip.StatusOK, "OK")
	o.bindings, o.now = cur, now
	return o
}

// renew fills nb's strings, reusing old's where they are the same: a
// refresh then stores nothing new, and the table keeps no reference to
// the datagram the fast path read them from.
func renew(nb, old *location.Binding, callID, ua string, src Source) {
	nb.AOR = keep(old.AOR, nb.AOR)
	nb.Contact = keep(old.Contact, nb.Contact)
	nb.Instance = keep(old.Instance, nb.Instance)
	nb.CallID = keep(old.CallID, callID)
	nb.UserAgent = keep(old.UserAgent, ua)
	nb.Source = addrString(old.Source, src.Addr)
	nb.Local = addrString(old.Local, src.Local)
}

func keep(old, s string) string {
	if s == old {
		return old
	}
	return strings.Clone(s)
}

// addrString is a's text, old itself when that is what it reads.
func addrString(old string, a netip.AddrPort) string {
	if !a.IsValid() {
		return a.String()
	}
	var buf [64]byte
	b := a.AppendTo(buf[:0])
	if string(b) == old {
		return old
	}
	return string(b)
}

// appendContact appends a 200's Contact value for b.
func appendContact(dst []byte, b *location.Binding, now time.Time) []byte {
	left := int(b.Expires.Sub(now).Round(time.Second) / time.Second)
	dst = append(dst, '<')
	dst = append(dst, b.Contact...)
	dst = append(dst, ">;expires="...)
	dst = strconv.AppendInt(dst, int64(left), 10)
	if b.Instance != "" {
		// RFC 5626 §6: the registrar echoes the instance (and reg-id),
		// or the device takes it that outbound is not supported here.
		dst = append(dst, `;+sip.instance="<`...)
		dst = append(dst, b.Instance...)
		dst = append(dst, `>"`...)
		if b.RegID != 0 {
			dst = append(dst, ";reg-id="...)
			dst = strconv.AppendUint(dst, uint64(b.RegID), 10)
		}
	}
	return dst
}

// appendDate appends a Date header's value (RFC 3261 §20.17).
func appendDate(dst []byte, now time.Time) []byte {
	return now.UTC().AppendFormat(dst, "Mon, 02 Jan 2006 15:04:05 GMT")
}

// failure counts a failed authentication and answers it: every failure gets
// the same plain 403 whatever the user or the cause, and a failure from a
// banned IP gets nothing, so that no answer tells a guesser more than "no".
func (r *Registrar) failure(src netip.AddrPort, user, reason string, v guard.Verdict) outcome {
	r.AuthFailure(src, strings.Clone(user), reason) // the guard keeps it; not a view of a datagram
	if v == guard.Quiet {
		r.Stats.Dropped.Add(1)
		return outcome{silent: true}
	}
	return answer(sip.StatusForbidden, "Forbidden")
}

func indexOf(list []location.Binding, b *location.Binding) int {
	for i := range list {
		if list[i].Same(b) {
			return i
		}
	}
	return -1
}

func dropOldest(list []location.Binding) []location.Binding {
	oldest := 0
	for i := range list {
		if list[i].Since.Before(list[oldest].Since) {
			oldest = i
		}
	}
	return append(list[:oldest], list[oldest+1:]...)
}

// instanceLike reports whether a +sip.instance value is a URN made of the
// characters RFC 8141 allows (and so is safe to echo inside a quoted
// header parameter).
func instanceLike(s string) bool {
	if len(s) < 5 || len(s) > 256 || !strings.HasPrefix(strings.ToLower(s), "urn:") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-._~:%!$&'()*+,;=@/?#", c) >= 0:
		default:
			return false
		}
	}
	return true
}
