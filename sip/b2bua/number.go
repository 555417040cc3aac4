package b2bua

import (
	"strings"

	"github.com/emiago/sipgo/sip"
)

// outsideNumber is the caller's phone number as well as the INVITE tells
// it. Numbers of other carriers attached to the VPBX often arrive as SIP
// addresses whose user part is a login (sip:op17@sip.carrier.ru) or carries
// parameters (sip:+74951234567;cpc=ordinary@carrier.ru); the number is then
// in P-Asserted-Identity, Remote-Party-ID or the display name. The first
// candidate that looks like a phone number wins; otherwise the From user is
// kept as it is.
func outsideNumber(req *sip.Request) string {
	from := req.From()
	var candidates []string
	if from != nil {
		candidates = append(candidates, from.Address.User)
	}
	for _, name := range []string{"P-Asserted-Identity", "Remote-Party-ID"} {
		for _, h := range req.GetHeaders(name) {
			candidates = append(candidates, uriUser(h.Value()))
		}
	}
	if from != nil {
		candidates = append(candidates, from.DisplayName)
	}
	for _, c := range candidates {
		if n, ok := phoneLike(c); ok {
			return n
		}
	}
	if from != nil {
		return from.Address.User
	}
	return ""
}

// uriUser is the user part of a name-addr or URI header value
// ("Name" <sip:user@host>;params, <tel:+7495...>).
func uriUser(v string) string {
	if i := strings.IndexByte(v, '<'); i >= 0 {
		v = v[i+1:]
		if j := strings.IndexByte(v, '>'); j >= 0 {
			v = v[:j]
		}
	}
	v = strings.TrimSpace(v)
	for _, scheme := range []string{"sips:", "sip:", "tel:"} {
		if len(v) >= len(scheme) && strings.EqualFold(v[:len(scheme)], scheme) {
			v = v[len(scheme):]
			break
		}
	}
	if i := strings.IndexByte(v, '@'); i >= 0 {
		v = v[:i]
	}
	return v
}

// phoneLike reduces s to "+" and digits if it is a phone number written
// with the usual separators (and maybe URI parameters after ';').
func phoneLike(s string) (string, bool) {
	if i := strings.IndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimSpace(s)
	var b strings.Builder
	digits := 0
	for i, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
			digits++
		case r == '+' && i == 0:
			b.WriteRune(r)
		case r == ' ' || r == '-' || r == '(' || r == ')' || r == '.':
		default:
			return "", false
		}
	}
	if digits < 5 || digits > 15 {
		return "", false
	}
	return b.String(), true
}

// displayName makes a name safe inside a quoted display name: quotes,
// backslashes and control characters are dropped (RFC 3261 §25.1
// quoted-string; sipgo writes the name between quotes as it is).
func displayName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
