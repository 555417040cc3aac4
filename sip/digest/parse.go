package digest

import (
	"strconv"
	"strings"
)

// credentials are the fields of an Authorization header that a server
// checks. Values are substrings of the header (no copies).
type credentials struct {
	username, realm, nonce, uri, response, algorithm, cnonce, qop string
	nc                                                            int
	userhash                                                      bool
}

// parseCredentials parses `Digest k=v, k="v", ...`. It is hand-written
// rather than taken from icholy/digest because it runs for every REGISTER
// and the general parser (rune-by-rune through bufio) was a fifth of the
// registrar's CPU time.
func parseCredentials(s string) (credentials, bool) {
	var c credentials
	s = strings.TrimSpace(s)
	if len(s) < 7 || !strings.EqualFold(s[:6], "digest") || (s[6] != ' ' && s[6] != '\t') {
		return c, false
	}
	s = s[7:]
	for {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			return c, true
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return c, false
		}
		key := strings.TrimSpace(s[:eq])
		s = strings.TrimLeft(s[eq+1:], " \t")
		var val string
		if strings.HasPrefix(s, `"`) {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return c, false
			}
			val, s = s[1:1+end], s[2+end:]
			if strings.IndexByte(val, '\\') >= 0 {
				return c, false // quoted-pair escapes never occur in valid SIP digest values we accept
			}
		} else {
			end := strings.IndexAny(s, ", \t")
			if end < 0 {
				end = len(s)
			}
			val, s = s[:end], s[end:]
		}
		switch strings.ToLower(key) {
		case "username":
			c.username = val
		case "realm":
			c.realm = val
		case "nonce":
			c.nonce = val
		case "uri":
			c.uri = val
		case "response":
			c.response = val
		case "algorithm":
			c.algorithm = val
		case "cnonce":
			c.cnonce = val
		case "qop":
			c.qop = val
		case "nc":
			n, err := strconv.ParseUint(val, 16, 32)
			if err != nil {
				return c, false
			}
			c.nc = int(n)
		case "userhash":
			c.userhash = strings.EqualFold(val, "true")
		}
	}
}
