package registrar

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// The UDP fast path reads the REGISTERs phones actually send (one header
// per line, angle-bracketed addresses, plain parameters) straight from the
// datagram and writes the answer straight into a buffer. sipgo's parser
// and response builder cost about 150 allocations per registration, most
// of the registrar's CPU under a registration storm. Anything the fast
// path does not read with certainty (line folding, comma-joined Vias, an
// escaped or IPv6 URI, a body, a duplicate parameter, a scanner's user
// agent, any header sipgo parses itself that REGISTER does not use) goes
// to sipgo and the full path unchanged, so both give the same answer and
// the same bindings: FuzzFastPathMatchesParser holds them to that.

const (
	maxFastVias     = 4
	maxFastContacts = 4
)

// fastRegister is a REGISTER read by parseFast: what register holds, plus
// the raw header values a response echoes. Every string is a substring of
// one copy of the datagram.
type fastRegister struct {
	register
	vias            [maxFastVias]string
	nvia            int
	from, to, cseqV string
	callIDV         string
	toTagged        bool
	rport           bool // the top Via asks for rport (RFC 3581) and names no received
	contacts        [maxFastContacts]contactReq
	ncontacts       int
}

// header names parseFast tells apart.
const (
	hOther = iota // a header sipgo keeps as text and REGISTER does not read
	hUnusual
	hVia
	hFrom
	hTo
	hCallID
	hCSeq
	hMaxForwards
	hContentLength
	hContact
	hExpires
	hUserAgent
	hAuthorization
)

// headerKind names a header field, compact forms included.
func headerKind(name string) int {
	var low [20]byte
	if len(name) > len(low) {
		return hOther
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		low[i] = c
	}
	switch string(low[:len(name)]) {
	case "via", "v":
		return hVia
	case "from", "f":
		return hFrom
	case "to", "t":
		return hTo
	case "call-id", "i":
		return hCallID
	case "cseq":
		return hCSeq
	case "max-forwards":
		return hMaxForwards
	case "content-length", "l":
		return hContentLength
	case "contact", "m":
		return hContact
	case "expires":
		return hExpires
	case "user-agent":
		return hUserAgent
	case "authorization":
		return hAuthorization
	case "content-type", "c", "route", "record-route", "refer-to", "referred-by",
		"require", "proxy-require", "path", "timestamp":
		// sipgo parses these itself (and refuses the message where they
		// are malformed), or they ask for what the full path decides.
		return hUnusual
	}
	return hOther
}

// parseFast reads s, a whole datagram, into fr. It reports false for
// anything but a sane, plainly written REGISTER, which is then left to
// sipgo and the full path.
func parseFast(s string, fr *fastRegister) bool {
	line, rest, ok := cutLine(s)
	if !ok || !strings.HasPrefix(line, "REGISTER ") {
		return false
	}
	uri, ver, ok := strings.Cut(line[len("REGISTER "):], " ")
	if !ok || ver != "SIP/2.0" || !plainURI(uri) {
		return false
	}
	var n struct{ from, to, callID, cseq, maxFwd, length, expires, ua, auth int }
	for {
		if line, rest, ok = cutLine(rest); !ok {
			return false
		}
		if line == "" {
			break
		}
		if rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			return false // folded onto the next line
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !token(name) || !textValue(value) {
			return false
		}
		value = strings.TrimSpace(value) // as sipgo does
		switch headerKind(name) {
		case hVia:
			if fr.nvia == maxFastVias || !plainVia(value, fr.nvia == 0, &fr.rport) {
				return false
			}
			fr.vias[fr.nvia] = value
			fr.nvia++
		case hFrom:
			n.from++
			if _, _, ok := nameAddr(value, nil); !ok {
				return false
			}
			fr.from = value
		case hTo:
			n.to++
			user, tagged, ok := nameAddr(value, nil)
			if !ok {
				return false
			}
			fr.to, fr.toUser, fr.toTagged = value, user, tagged
		case hCallID:
			n.callID++
			if !word(value) {
				return false
			}
			fr.callIDV, fr.callID = value, value
		case hCSeq:
			n.cseq++
			num, method, ok := strings.Cut(value, " ")
			if !ok || method != "REGISTER" || !digits(num, 9) {
				return false
			}
			seq, _ := strconv.ParseUint(num, 10, 32)
			fr.cseqV, fr.cseq = value, uint32(seq)
		case hMaxForwards:
			n.maxFwd++
			if !digits(value, 3) {
				return false
			}
		case hContentLength:
			n.length++
			if value != "0" {
				return false
			}
		case hExpires:
			n.expires++
			if !digits(value, 9) {
				return false
			}
			fr.expires, _ = strconv.ParseUint(value, 10, 32)
			fr.hasExpires = true
		case hUserAgent:
			n.ua++
			fr.userAgent = value
		case hAuthorization:
			n.auth++
			fr.auth = value
		case hContact:
			if !fr.readContacts(value) {
				return false
			}
		case hUnusual:
			return false
		}
	}
	if rest != "" || fr.nvia == 0 || n.from != 1 || n.to != 1 || n.callID != 1 || n.cseq != 1 || n.maxFwd != 1 ||
		n.length > 1 || n.expires > 1 || n.ua > 1 || n.auth > 1 {
		return false
	}
	fr.register.contacts = fr.contacts[:fr.ncontacts]
	return true
}

// readContacts reads a Contact value, a comma-separated list split the
// way sipgo splits it (not inside quotes or angle brackets).
func (fr *fastRegister) readContacts(v string) bool {
	quoted, bracketed, start := false, false, 0
	for i := 0; i <= len(v); i++ {
		if i < len(v) {
			switch c := v[i]; {
			case c == '"':
				quoted = !quoted
				continue
			case quoted:
				continue
			case c == '<':
				bracketed = true
				continue
			case c == '>':
				bracketed = false
				continue
			case c != ',' || bracketed:
				continue
			}
		}
		if fr.ncontacts == maxFastContacts {
			return false
		}
		c := &fr.contacts[fr.ncontacts]
		*c = contactReq{expires: -1}
		elem := strings.TrimLeft(v[start:i], " ")
		var ok bool
		if c.uri, _, ok = nameAddr(elem, c); !ok {
			return false
		}
		fr.ncontacts++
		start = i + 1
	}
	return true
}

// nameAddr reads [display-name] "<" SIP-URI ">" *(";" param): the user
// part of the URI and whether a tag parameter follows. For a Contact (c
// not nil) it returns the URI instead of the user, and reads expires,
// +sip.instance and reg-id into c.
func nameAddr(v string, c *contactReq) (string, bool, bool) {
	lt := strings.IndexByte(v, '<')
	if lt < 0 || !displayName(v[:lt]) {
		return "", false, false
	}
	gt := strings.IndexByte(v[lt:], '>')
	if gt < 0 {
		return "", false, false
	}
	uri, params := v[lt+1:lt+gt], v[lt+gt+1:]
	if !plainURI(uri) {
		return "", false, false
	}
	tagged := false
	var seen names
	for params != "" {
		if params[0] != ';' {
			return "", false, false
		}
		var p string
		p, params = cutParam(params[1:])
		name, value, hasValue, ok := param(p, c != nil)
		if !ok || !seen.fresh(name, false) {
			return "", false, false
		}
		switch {
		case name == "tag":
			tagged = true
		case c == nil:
		case name == "expires":
			if !hasValue || !digits(value, 9) {
				return "", false, false
			}
			n, _ := strconv.ParseUint(value, 10, 32)
			c.expires = int64(n)
		case name == "+sip.instance":
			c.instance = value
		case name == "reg-id":
			c.regID, c.badRegID = parseRegID(value)
			if c.badRegID {
				return "", false, false
			}
		}
	}
	if c != nil {
		return uri, tagged, true
	}
	user, _, _ := strings.Cut(strings.TrimPrefix(uri, "sip:"), "@")
	if !strings.Contains(uri, "@") {
		user = ""
	}
	return user, tagged, true
}

// cutParam splits off one parameter, a quoted value kept whole.
func cutParam(s string) (string, string) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case ';':
			if !quoted {
				return s[:i], s[i:]
			}
		}
	}
	return s, ""
}

// displayName accepts what may stand before "<": nothing, spaces, a quoted
// string without escapes, or plain words.
func displayName(s string) bool {
	s = strings.TrimRight(s, " ")
	if s == "" {
		return true
	}
	if s[0] == '"' {
		return len(s) >= 2 && s[len(s)-1] == '"' && !strings.ContainsAny(s[1:len(s)-1], "\"\\")
	}
	return plain(s, " -._!*+`'~")
}

// plainURI accepts sip:[user@]host[:port]*(;param) written exactly as
// sipgo writes it back: lower-case scheme, a name or IPv4 host, a port
// without leading zeros, parameters with values and no repeats, no
// escapes, no headers.
func plainURI(u string) bool {
	rest, ok := strings.CutPrefix(u, "sip:")
	if !ok {
		return false
	}
	hostport, params, _ := strings.Cut(rest, ";")
	if at := strings.IndexByte(hostport, '@'); at >= 0 {
		user := hostport[:at]
		hostport = hostport[at+1:]
		if user == "" || !plain(user, "-_.!~*'()+$&=") {
			return false
		}
	}
	host, port, hasPort := strings.Cut(hostport, ":")
	if host == "" || !plain(host, ".-") || (hasPort && (!digits(port, 5) || port[0] == '0')) {
		return false
	}
	if hasPort {
		if p, _ := strconv.Atoi(port); p > 65535 {
			return false
		}
	}
	var seen names
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		if name, _, _, ok := param(p, false); !ok || !seen.fresh(name, false) {
			return false
		}
	}
	return true
}

// plainVia accepts a single UDP Via with plain parameters. For the top
// one it tells whether the answer must fill in rport and received.
func plainVia(v string, top bool, rport *bool) bool {
	rest, ok := strings.CutPrefix(v, "SIP/2.0/UDP ")
	if !ok {
		return false
	}
	sentBy, params, _ := strings.Cut(rest, ";")
	host, port, hasPort := strings.Cut(sentBy, ":")
	if host == "" || !plain(host, ".-") || (hasPort && !digits(port, 5)) {
		return false
	}
	wants, received := false, false
	var seen names
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		name, _, hasValue, ok := param(p, false)
		if !ok || !seen.fresh(name, true) {
			return false
		}
		switch {
		case name == "rport":
			wants = !hasValue
		case name == "received":
			received = true
		case strings.EqualFold(name, "rport"), strings.EqualFold(name, "received"):
			return false
		}
	}
	if top {
		if wants && received {
			return false
		}
		*rport = wants
	}
	return true
}

// names remembers the parameter names of one list, to refuse a repeat
// (sipgo keeps the last of them, a reader the first).
type names struct {
	seen [8]string
	n    int
}

// fresh records name and reports whether it is new and fits; fold
// compares without case.
func (ns *names) fresh(name string, fold bool) bool {
	if ns.n == len(ns.seen) {
		return false
	}
	for _, s := range ns.seen[:ns.n] {
		if s == name || (fold && strings.EqualFold(s, name)) {
			return false
		}
	}
	ns.seen[ns.n] = name
	ns.n++
	return true
}

// param splits name[=value] and accepts a plain name and a token value
// (or, where quoted is allowed, a quoted string without escapes,
// semicolons or equals signs, which sipgo splits on).
func param(p string, quoted bool) (name, value string, hasValue, ok bool) {
	name, value, hasValue = strings.Cut(p, "=")
	if name == "" || !plain(name, "-_.!~*'+") || (hasValue && value == "") {
		return "", "", false, false
	}
	if hasValue && !(quoted && len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' &&
		!strings.ContainsAny(value[1:len(value)-1], "\"\\;=")) && !plain(value, "-_.!~*'+") {
		return "", "", false, false
	}
	return name, value, hasValue, true
}

// plain reports whether s holds only letters, digits and bytes of extra.
func plain(s, extra string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !alnum(c) && strings.IndexByte(extra, c) < 0 {
			return false
		}
	}
	return true
}

// cutLine splits off a line ended by CRLF.
func cutLine(s string) (string, string, bool) {
	i := strings.Index(s, "\r\n")
	if i < 0 {
		return "", "", false
	}
	return s[:i], s[i+2:], true
}

// textValue accepts a header value of valid UTF-8 without control
// characters other than tab.
func textValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return utf8.ValidString(s)
}

func token(s string) bool { return s != "" && plain(s, "-.!%*_+`'~") }

// word accepts a Call-ID: RFC 3261's word, with at most one "@".
func word(s string) bool {
	return s != "" && plain(s, "-.!%*_+`'~()<>:\\\"/[]?{}@") && strings.Count(s, "@") <= 1
}

func digits(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func alnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
