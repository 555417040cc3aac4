package registrar

import (
	"net/netip"
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
	var seen [8]string // parameter names so far: a repeated one is the full path's
	nseen := 0
	for params != "" {
		if params[0] != ';' {
			return "", false, false
		}
		var p string
		p, params = cutParam(params[1:])
		name, value, hasValue := strings.Cut(p, "=")
		if !paramName(name) || (hasValue && !paramValue(value, c != nil)) || nseen == len(seen) {
			return "", false, false
		}
		for _, s := range seen[:nseen] {
			if s == name {
				return "", false, false
			}
		}
		seen[nseen] = name
		nseen++
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
	for i := 0; i < len(s); i++ {
		if c := s[i]; !alnum(c) && strings.IndexByte(" -._!*+`'~", c) < 0 {
			return false
		}
	}
	return true
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
		if user == "" {
			return false
		}
		for i := 0; i < len(user); i++ {
			if c := user[i]; !alnum(c) && strings.IndexByte("-_.!~*'()+$&=", c) < 0 {
				return false
			}
		}
	}
	host, port, hasPort := strings.Cut(hostport, ":")
	if host == "" || (hasPort && (!digits(port, 5) || port[0] == '0')) {
		return false
	}
	if hasPort {
		if p, _ := strconv.Atoi(port); p > 65535 {
			return false
		}
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; !alnum(c) && c != '.' && c != '-' {
			return false
		}
	}
	var seen [8]string
	nseen := 0
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		name, value, hasValue := strings.Cut(p, "=")
		if !paramName(name) || (hasValue && !paramValue(value, false)) || nseen == len(seen) {
			return false
		}
		for _, s := range seen[:nseen] {
			if s == name {
				return false
			}
		}
		seen[nseen] = name
		nseen++
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
	if host == "" || (hasPort && !digits(port, 5)) {
		return false
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; !alnum(c) && c != '.' && c != '-' {
			return false
		}
	}
	wants, received := false, false
	var seen [8]string
	nseen := 0
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		name, value, hasValue := strings.Cut(p, "=")
		if !paramName(name) || (hasValue && !paramValue(value, false)) || nseen == len(seen) {
			return false
		}
		for _, s := range seen[:nseen] {
			if strings.EqualFold(s, name) {
				return false
			}
		}
		seen[nseen] = name
		nseen++
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

func paramName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !alnum(c) && strings.IndexByte("-_.!~*'+", c) < 0 {
			return false
		}
	}
	return true
}

// paramValue accepts a token, or where quoted is allowed a quoted string
// without escapes, semicolons or equals signs (sipgo splits on those).
func paramValue(s string, quoted bool) bool {
	if s == "" {
		return false
	}
	if quoted && len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return !strings.ContainsAny(s[1:len(s)-1], "\"\\;=")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !alnum(c) && strings.IndexByte("-_.!~*'+", c) < 0 {
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

func token(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !alnum(c) && strings.IndexByte("-.!%*_+`'~", c) < 0 {
			return false
		}
	}
	return true
}

// word accepts a Call-ID: RFC 3261's word, with at most one "@".
func word(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !alnum(c) && strings.IndexByte("-.!%*_+`'~()<>:\\\"/[]?{}@", c) < 0 {
			return false
		}
	}
	return strings.Count(s, "@") <= 1
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
		b = strconv.AppendUint(b, r.requestID(fr.callID, fr.cseq), 36)
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
