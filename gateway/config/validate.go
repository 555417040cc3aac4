package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"callgate/sip/sipnet"

	"golang.org/x/crypto/bcrypt"
)

type validator struct {
	file     string
	base     string
	idx      *lineIndex
	problems []Problem
	exts     map[string]string // extension -> where it is defined
}

func (v *validator) bad(path, hint, format string, args ...any) {
	v.problems = append(v.problems, Problem{File: v.file, Line: v.idx.line(path), Msg: path + ": " + fmt.Sprintf(format, args...), Hint: hint, key: path})
}

var (
	idRe        = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	extensionRe = regexp.MustCompile(`^[0-9]{2,8}$`)
	sipUserRe   = regexp.MustCompile(`^[A-Za-z0-9._~!$&'()*+,;=-]{1,64}$`)
)

func (v *validator) validate(c *Config) {
	if strings.TrimSpace(c.DataDir) == "" {
		v.bad("data_dir", "e.g. data_dir = \"/var/lib/callgate\"", "must not be empty")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.bad("log.level", "one of debug, info, warn, error", "unknown level %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		v.bad("log.format", "text or json", "unknown format %q", c.Log.Format)
	}
	v.sip(&c.SIP)
	v.media(&c.Media)
	if c.Recording.Dir == "" {
		c.Recording.Dir = filepath.Join(c.DataDir, "recordings")
	}
	if err := c.Recording.MinFree.err; err != nil {
		v.bad("recording.min_free", "e.g. \"1GiB\", \"500MB\" or \"0\" to disable", "%v", err)
	}
	v.between("calls.ring_timeout", c.Calls.RingTimeout.D(), time.Second, 10*time.Minute)
	v.between("calls.shutdown_grace", c.Calls.ShutdownGrace.D(), 0, 10*time.Minute)
	if len(c.Calls.DefaultRegion) != 2 || strings.ToUpper(c.Calls.DefaultRegion) != c.Calls.DefaultRegion {
		v.bad("calls.default_region", "a two-letter country code, e.g. \"RU\"", "%q is not a region code", c.Calls.DefaultRegion)
	}
	switch c.Recording.Format {
	case "opus", "wav":
	default:
		v.bad("recording.format", `"opus" (compressed after the call) or "wav"`, "unknown format %q", c.Recording.Format)
	}
	if c.Recording.Retention.D() < time.Hour {
		v.bad("recording.retention", "e.g. \"8760h\" for one year", "must be at least 1h, got %s", c.Recording.Retention.D())
	}
	employees := v.employees(c.Employees)
	v.desks(c.Desks)
	groups := v.groups(c.Groups, employees)
	v.upstream(&c.Upstream, employees, groups)
	v.http(&c.HTTP, employees)
	v.crm(c, employees)
	v.console(&c.Console)
	v.dial(c)
	v.dns(&c.DNS)
	v.backup(c)
	v.archive(c)
	v.between("routing.crm_budget", c.Routing.CRMBudget.D(), time.Millisecond, 5*time.Second)
	v.between("routing.responsible_timeout", c.Routing.ResponsibleTimeout.D(), time.Second, 10*time.Minute)
	v.between("routing.cache_ttl", c.Routing.CacheTTL.D(), time.Second, 24*time.Hour)
}

// listenHint is the hint for a SIP address: every transport callgate listens on.
var listenHint = func() string {
	var forms []string
	for _, t := range sipnet.Transports() {
		forms = append(forms, fmt.Sprintf("%q", string(t)+":IP:PORT"))
	}
	return "write " + strings.Join(forms, " or ")
}()

func (v *validator) sip(s *SIP) {
	if len(s.Listen) == 0 {
		v.bad("sip.listen", "e.g. listen = [\"udp:0.0.0.0:5060\", \"tcp:0.0.0.0:5060\"]", "at least one listen address is needed")
	}
	seen := map[string]bool{}
	for i, l := range s.Listen {
		p := fmt.Sprintf("sip.listen[%d]", i)
		if l.err != nil {
			v.bad(p, listenHint, "%v", l.err)
			continue
		}
		if seen[l.String()] {
			v.bad(p, "remove the duplicate", "%s is listed twice", l)
		}
		seen[l.String()] = true
	}
	if s.Advertise.text != "" && (s.Advertise.err != nil || s.Advertise.Addr.IsUnspecified()) {
		v.bad("sip.advertise", "the IP address phones and the VPBX reach callgate at, e.g. \"192.168.1.10\"", "%q is not a usable IP address", s.Advertise.text)
	}
	if strings.TrimSpace(s.Realm) == "" || strings.ContainsAny(s.Realm, "\"\\\r\n") {
		v.bad("sip.realm", "e.g. realm = \"callgate\"", "must be a non-empty string without quotes")
	}
	v.cidrs("sip.allow_networks", s.AllowNetworks)
	if len(s.DigestAlgorithms) == 0 {
		v.bad("sip.digest_algorithms", "e.g. [\"MD5\", \"SHA-256\"]", "at least one algorithm is needed")
	}
	for i, a := range s.DigestAlgorithms {
		if a != "MD5" && a != "SHA-256" {
			v.bad(fmt.Sprintf("sip.digest_algorithms[%d]", i), "MD5 or SHA-256", "unsupported algorithm %q", a)
		}
	}
	v.between("sip.nonce_lifetime", s.NonceLifetime.D(), 5*time.Second, time.Hour)
	v.between("sip.min_expires", s.MinExpires.D(), 10*time.Second, 24*time.Hour)
	v.between("sip.max_expires", s.MaxExpires.D(), 10*time.Second, 7*24*time.Hour)
	if s.MinExpires > s.MaxExpires {
		v.bad("sip.max_expires", "max_expires must not be below min_expires", "%s is below min_expires %s", s.MaxExpires.D(), s.MinExpires.D())
	}
	if s.DefaultExpires < s.MinExpires || s.DefaultExpires > s.MaxExpires {
		v.bad("sip.default_expires", "keep it between min_expires and max_expires", "%s is outside %s..%s", s.DefaultExpires.D(), s.MinExpires.D(), s.MaxExpires.D())
	}
	if s.MaxContacts < 1 || s.MaxContacts > 20 {
		v.bad("sip.max_contacts", "1 to 20 devices per extension", "%d is out of range", s.MaxContacts)
	}
	if s.KeepaliveInterval != 0 && s.KeepaliveInterval.D() < 500*time.Millisecond {
		v.bad("sip.keepalive_interval", "\"0s\" turns keepalives off; otherwise at least \"1s\"", "%s is too short", s.KeepaliveInterval.D())
	}
	if s.TCPMaxPerIP < 0 || s.TCPMaxPerIP > 100000 {
		v.bad("sip.tcp_max_per_ip", "0 turns the cap off; otherwise up to 100000, e.g. 64 (a phone uses one or two)", "%d is out of range", s.TCPMaxPerIP)
	}
	if s.TCPIdleTimeout != 0 && (s.TCPIdleTimeout.D() < time.Second || s.TCPIdleTimeout.D() > 24*time.Hour) {
		v.bad("sip.tcp_idle_timeout", "\"0s\" keeps idle connections; otherwise 1s to 24h, e.g. \"3m\"", "%s is out of range", s.TCPIdleTimeout.D())
	}
	if s.Ban.MaxFailures < 1 {
		v.bad("sip.ban.max_failures", "e.g. 5", "must be at least 1")
	}
	if s.Ban.MaxFailuresPerIP < s.Ban.MaxFailures {
		v.bad("sip.ban.max_failures_per_ip", "phones behind one NAT share an IP: keep it well above max_failures", "must not be below max_failures (%d)", s.Ban.MaxFailures)
	}
	v.between("sip.ban.window", s.Ban.Window.D(), time.Second, 24*time.Hour)
	v.between("sip.ban.duration", s.Ban.Duration.D(), time.Second, 30*24*time.Hour)
	for i, ua := range s.ScannerUserAgents {
		if t := strings.TrimSpace(ua); len(t) < 3 || len(t) > 64 || strings.ContainsFunc(t, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			v.bad(fmt.Sprintf("sip.scanner_user_agents[%d]", i), "3 to 64 printable characters of a scanner's User-Agent, e.g. \"friendly-scanner\"; [] turns the check off",
				"%q is not a usable User-Agent substring", ua)
		}
	}
}

func (v *validator) media(m *Media) {
	if err := m.RTPPorts.err; err != nil {
		v.bad("media.rtp_ports", "e.g. rtp_ports = \"20000-20999\"", "%v", err)
	}
	if m.Bind.err != nil || !m.Bind.IsSet() {
		v.bad("media.bind", "an IP address, e.g. \"0.0.0.0\"", "%q is not an IP address", m.Bind.text)
	}
	for _, k := range []struct {
		key string
		val IP
	}{{"media.advertise", m.Advertise}, {"media.upstream_advertise", m.UpstreamAdvertise}} {
		if k.val.text != "" && (k.val.err != nil || k.val.Addr.IsUnspecified()) {
			v.bad(k.key, "the IP address the other side sends RTP to", "%q is not a usable IP address", k.val.text)
		}
	}
	v.between("media.timeout", m.Timeout.D(), time.Second, time.Hour)
	if p := m.WebRTCPort; p < 0 || p > 65535 {
		v.bad("media.webrtc_port", "a UDP port, or 0 for any free one", "%d is not a port", p)
	} else if m.RTPPorts.err == nil && p >= m.RTPPorts.Lo && p <= m.RTPPorts.Hi {
		v.bad("media.webrtc_port", "a UDP port outside media.rtp_ports", "%d is inside media.rtp_ports", p)
	}
}

func (v *validator) between(path string, d, lo, hi time.Duration) {
	if d < lo || d > hi {
		v.bad(path, fmt.Sprintf("a duration between %s and %s", lo, hi), "%s is out of range", d)
	}
}

func (v *validator) cidrs(path string, list Networks) {
	for i, n := range list {
		if n.err != nil {
			v.bad(fmt.Sprintf("%s[%d]", path, i), "write a network as ADDRESS/BITS, e.g. \"192.168.1.0/24\" or \"10.0.0.5/32\"", "%q is not a CIDR", n.text)
		}
	}
}

// secret reads a value given either inline or through a *_file key.
func (v *validator) secret(path, inline, filePath, fileKey string) string {
	switch {
	case inline != "" && filePath != "":
		v.bad(path, "keep one of them", "both %s and %s are set", lastKey(path), fileKey)
		return inline
	case filePath != "":
		p := filePath
		if !filepath.IsAbs(p) {
			p = filepath.Join(v.base, p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			v.bad(parentKey(path)+"."+fileKey, "the file must exist and be readable by the callgate user", "cannot read secret: %v", err)
			return ""
		}
		s := strings.TrimRight(string(b), "\r\n")
		if s == "" {
			v.bad(parentKey(path)+"."+fileKey, "put the secret on the first line", "%s is empty", p)
		}
		return s
	case inline == "":
		v.bad(path, fmt.Sprintf("set %s or %s", lastKey(path), fileKey), "missing %s", lastKey(path))
	}
	return inline
}

func lastKey(path string) string { return path[strings.LastIndex(path, ".")+1:] }
func parentKey(path string) string {
	if i := strings.LastIndex(path, "."); i >= 0 {
		return path[:i]
	}
	return ""
}

func (v *validator) employees(list []Employee) map[string]bool {
	ids := map[string]string{}
	exts := map[string]string{}
	pins := map[string]string{}
	for i := range list {
		e := &list[i]
		p := fmt.Sprintf("employee[%d]", i)
		if !idRe.MatchString(e.ID) {
			v.bad(p+".id", "lower-case letters, digits, '.', '_' or '-', e.g. id = \"ivanov\"", "%q is not a valid employee id", e.ID)
		} else if first, dup := ids[e.ID]; dup {
			v.bad(p+".id", "each [[employee]] needs its own id; the first is at line "+strconv.Itoa(v.idx.line(first)), "employee %q is defined twice", e.ID)
		} else {
			ids[e.ID] = p + ".id"
		}
		if n := len(e.Extensions); n < 1 || n > 2 {
			v.bad(p+".extensions", "an employee has 1 or 2 extensions (lines), e.g. extensions = [\"101\"]", "has %d extensions", n)
		}
		for j, x := range e.Extensions {
			xp := fmt.Sprintf("%s.extensions[%d]", p, j)
			if !extensionRe.MatchString(x) {
				v.bad(xp, "an extension is 2 to 8 digits, e.g. \"101\"", "%q is not a valid extension", x)
				continue
			}
			if first, dup := exts[x]; dup {
				v.bad(xp, "the first use is at line "+strconv.Itoa(v.idx.line(first)), "extension %s is used twice", x)
				continue
			}
			exts[x] = xp
		}
		e.SIPPassword = v.secret(p+".sip_password", e.SIPPassword, e.SIPPasswordFile, "sip_password_file")
		if e.SIPPassword != "" && len(e.SIPPassword) < 8 {
			v.bad(p+".sip_password", "phones are attacked by password guessing: use 8 or more characters", "too short (%d characters)", len(e.SIPPassword))
		}
		switch e.Role {
		case "":
			e.Role = "employee"
		case "employee", "manager", "admin":
		default:
			v.bad(p+".role", `"employee", "manager" or "admin"`, "unknown role %q", e.Role)
		}
		if e.ShiftPIN != "" {
			if !pinRe.MatchString(e.ShiftPIN) {
				v.bad(p+".shift_pin", "4 to 8 digits, dialled as *77*<pin> on a desk phone", "%q is not a valid PIN", e.ShiftPIN)
			} else if first, dup := pins[e.ShiftPIN]; dup {
				v.bad(p+".shift_pin", "each employee needs their own PIN", "also the PIN of %s", first)
			}
			pins[e.ShiftPIN] = e.ID
		}
		if e.PasswordHash != "" {
			if _, err := bcrypt.Cost([]byte(e.PasswordHash)); err != nil {
				v.bad(p+".password_hash", "make one with: callgate hash-password", "not a bcrypt hash")
			}
		}
	}
	out := map[string]bool{}
	for id := range ids {
		out[id] = true
	}
	v.exts = exts
	return out
}

var pinRe = regexp.MustCompile(`^[0-9]{4,8}$`)

func (v *validator) desks(list []Desk) {
	for i := range list {
		k := &list[i]
		p := fmt.Sprintf("desk[%d]", i)
		if !extensionRe.MatchString(k.Extension) {
			v.bad(p+".extension", "an extension is 2 to 8 digits, e.g. \"110\"", "%q is not a valid extension", k.Extension)
		} else if first, dup := v.exts[k.Extension]; dup {
			v.bad(p+".extension", "the first use is at line "+strconv.Itoa(v.idx.line(first)), "extension %s is used twice", k.Extension)
		} else {
			v.exts[k.Extension] = p + ".extension"
		}
		k.SIPPassword = v.secret(p+".sip_password", k.SIPPassword, k.SIPPasswordFile, "sip_password_file")
		if k.SIPPassword != "" && len(k.SIPPassword) < 8 {
			v.bad(p+".sip_password", "phones are attacked by password guessing: use 8 or more characters", "too short (%d characters)", len(k.SIPPassword))
		}
	}
}

func (v *validator) groups(list []Group, employees map[string]bool) map[string]bool {
	ids := map[string]bool{}
	for i := range list {
		g := &list[i]
		p := fmt.Sprintf("group[%d]", i)
		if !idRe.MatchString(g.ID) {
			v.bad(p+".id", "lower-case letters, digits, '.', '_' or '-', e.g. id = \"sales\"", "%q is not a valid group id", g.ID)
		} else if ids[g.ID] || employees[g.ID] {
			v.bad(p+".id", "group ids must differ from each other and from employee ids", "%q is used twice", g.ID)
		}
		ids[g.ID] = true
		switch g.Strategy {
		case "":
			g.Strategy = "ring-all"
		case "ring-all", "sequential":
		default:
			v.bad(p+".strategy", "\"ring-all\" or \"sequential\"", "unknown strategy %q", g.Strategy)
		}
		if len(g.Members) == 0 {
			v.bad(p+".members", "list employee ids, e.g. members = [\"ivanov\", \"petrov\"]", "a group needs members")
		}
		for j, m := range g.Members {
			if !employees[m] {
				v.bad(fmt.Sprintf("%s.members[%d]", p, j), "name the id of an [[employee]]", "unknown employee %q", m)
			}
		}
		if g.RingTimeout != 0 {
			v.between(p+".ring_timeout", g.RingTimeout.D(), time.Second, 10*time.Minute)
		}
	}
	return ids
}

func (v *validator) upstream(u *Upstream, employees, groups map[string]bool) {
	if len(u.Accounts) > 0 {
		if !u.Registrar.IsSet() && u.Registrar.err == nil {
			v.bad("upstream.registrar", upstreamAddrHint, "is required when accounts are configured")
		}
		if strings.TrimSpace(u.Domain) == "" {
			v.bad("upstream.domain", "e.g. domain = \"vpbx400000000.mangosip.ru\"", "is required when accounts are configured")
		}
	}
	v.upstreamAddrs(u)
	v.between("upstream.expires", u.Expires.D(), 10*time.Second, 24*time.Hour)
	v.between("upstream.register_timeout", u.RegisterTimeout.D(), 100*time.Millisecond, 64*time.Second)
	v.between("upstream.retry_min", u.RetryMin.D(), 100*time.Millisecond, time.Hour)
	if u.RetryMax < u.RetryMin {
		v.bad("upstream.retry_max", "retry_max must not be below retry_min", "%s is below retry_min %s", u.RetryMax.D(), u.RetryMin.D())
	}
	users := map[string]string{}
	for i := range u.Accounts {
		a := &u.Accounts[i]
		p := fmt.Sprintf("upstream.account[%d]", i)
		if !sipUserRe.MatchString(a.User) {
			v.bad(p+".user", "the SIP login of the VPBX account, e.g. user = \"sales1\"", "%q is not a valid SIP user", a.User)
		} else if first, dup := users[strings.ToLower(a.User)]; dup {
			v.bad(p+".user", "the first is at line "+strconv.Itoa(v.idx.line(first)), "account %q is configured twice", a.User)
		} else {
			users[strings.ToLower(a.User)] = p + ".user"
		}
		if a.AuthUser != "" && !sipUserRe.MatchString(a.AuthUser) && !strings.Contains(a.AuthUser, "@") {
			v.bad(p+".auth_user", "leave it out to use user", "%q is not a valid authentication user", a.AuthUser)
		}
		a.Password = v.secret(p+".password", a.Password, a.PasswordFile, "password_file")
		if a.Employee != "" && !employees[a.Employee] {
			v.bad(p+".employee", "name the id of an [[employee]]", "unknown employee %q", a.Employee)
		}
		if a.Group != "" && !groups[a.Group] {
			v.bad(p+".group", "name the id of a [[group]]", "unknown group %q", a.Group)
		}
		if a.Group != "" && a.Employee != "" {
			v.bad(p+".group", "calls to an account ring either one employee or one group", "both employee and group are set")
		}
	}
	if len(u.Accounts) > 0 && len(u.TrustedSources) == 0 {
		v.bad("upstream.trusted_sources", trustedSourcesHint, "is required when accounts are configured")
	}
}

func (v *validator) http(h *HTTP, employees map[string]bool) {
	if h.Listen != "" {
		if _, err := netip.ParseAddrPort(h.Listen); err != nil {
			v.bad("http.listen", "e.g. listen = \"127.0.0.1:8080\"", "%q is not IP:PORT", h.Listen)
		}
	}
	if h.APITokensFile != "" {
		p := h.APITokensFile
		if !filepath.IsAbs(p) {
			p = filepath.Join(v.base, p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			v.bad("http.api_tokens_file", "one token per line; the file must be readable by the callgate user", "cannot read tokens: %v", err)
		} else {
			for _, l := range strings.Split(string(b), "\n") {
				if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
					h.APITokens = append(h.APITokens, l)
				}
			}
		}
	}
	const strong = "use 12 or more characters without spaces, e.g. from `openssl rand -hex 20`"
	weak := func(t string) bool { return len(t) < 12 || strings.ContainsAny(t, " \t\r\n") }
	for i, t := range h.APITokens {
		if weak(t) {
			v.bad(fmt.Sprintf("http.api_tokens[%d]", i), strong, "token is too weak")
		}
	}
	for i := range h.Tokens {
		t := &h.Tokens[i]
		path := fmt.Sprintf("http.token[%d]", i)
		t.Token = v.secret(path+".token", t.Token, t.TokenFile, "token_file")
		if t.Token != "" && weak(t.Token) {
			v.bad(path+".token", strong, "token is too weak")
		}
		kind, name, _ := strings.Cut(t.Scope, ":")
		switch {
		case t.Scope == "admin":
		case kind == "employee" && employees[name]:
		case kind == "employee":
			v.bad(path+".scope", "name an [[employee]] id", "unknown employee %q", name)
		case kind == "crm" && idRe.MatchString(name):
		default:
			v.bad(path+".scope", `"admin", "employee:<id>" or "crm:<name>"`, "unknown scope %q", t.Scope)
		}
	}
	if (h.TLSCert == "") != (h.TLSKey == "") {
		v.bad("http.tls_cert", "set both tls_cert and tls_key, or neither", "tls_cert and tls_key go together")
	}
	for _, k := range []struct {
		key string
		p   *string
	}{{"http.tls_cert", &h.TLSCert}, {"http.tls_key", &h.TLSKey}} {
		if *k.p == "" {
			continue
		}
		if !filepath.IsAbs(*k.p) {
			*k.p = filepath.Join(v.base, *k.p)
		}
		if _, err := os.Stat(*k.p); err != nil {
			v.bad(k.key, "a PEM file readable by the callgate user", "%v", err)
		}
	}
	if h.PublicURL != "" {
		u, err := url.Parse(h.PublicURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			v.bad("http.public_url", `e.g. "https://callgate.example.ru" (the tunnel's public address)`, "%q is not an http(s) URL", h.PublicURL)
		}
	}
	v.between("http.link_ttl", h.LinkTTL.D(), time.Minute, 366*24*time.Hour)
	switch h.RecordingAccess {
	case "own", "all":
	default:
		v.bad("http.recording_access", `"own" (employees hear their own calls) or "all"`, "unknown value %q", h.RecordingAccess)
	}
	v.httpLimits(h)
}

// httpLimits checks the proxy and connection settings of the API.
func (v *validator) httpLimits(h *HTTP) {
	v.cidrs("http.trusted_proxies", h.TrustedProxies)
	switch h.ProxyHeader {
	case "X-Forwarded-For", "Forwarded":
	default:
		v.bad("http.proxy_header", `"X-Forwarded-For" or "Forwarded", whichever the tunnel writes`, "unknown header %q", h.ProxyHeader)
	}
	v.between("http.read_timeout", h.ReadTimeout.D(), time.Second, 10*time.Minute)
	v.between("http.write_timeout", h.WriteTimeout.D(), time.Second, time.Hour)
	v.between("http.idle_timeout", h.IdleTimeout.D(), time.Second, time.Hour)
	if h.MaxConnsPerIP != 0 && (h.MaxConnsPerIP < 8 || h.MaxConnsPerIP > 100000) {
		v.bad("http.max_conns_per_ip", "0 (no cap) or 8 to 100000: a browser holds a handful, a console tab about eight", "%d is out of range", h.MaxConnsPerIP)
	}
	if h.MaxHeaderBytes < 4<<10 || h.MaxHeaderBytes > 1<<20 {
		v.bad("http.max_header_bytes", "between 4096 and 1048576", "%d is out of range", h.MaxHeaderBytes)
	}
}
