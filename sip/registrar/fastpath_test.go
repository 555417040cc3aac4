package registrar

import (
	"bytes"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"callgate/sip/digest"
	"callgate/sip/guard"
	"callgate/sip/location"
	"callgate/sip/siptest"

	"github.com/emiago/sipgo/sip"
	icdigest "github.com/icholy/digest"
)

// twin is two registrars in the same state: one answers through the UDP
// fast path, the other through sipgo's parser and the full path. They
// share the digest server, so a credential good for one is good for the
// other (and a nonce count used by one is a retransmission to the other).
type twin struct {
	fast, full *Registrar
}

var twinNow = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

func newTwin(auth *digest.Server) twin {
	mk := func() *Registrar {
		cfg := Config{MinExpires: time.Minute, MaxExpires: time.Hour, DefaultExpires: 10 * time.Minute, MaxContacts: 3,
			AllowNetworks: []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16")}, ServerName: "callgate-test",
			Scanners: guard.NewScanners(guard.DefaultScannerUserAgents)}
		g := guard.New(guard.Config{MaxFailures: 3, MaxFailuresPerIP: 10, Window: time.Minute, BanTime: time.Minute})
		r := New(cfg, auth, secrets{"101": "Phone101pass", "102": "Phone102pass"}, g, location.New())
		r.now = func() time.Time { return twinNow }
		return r
	}
	tw := twin{fast: mk(), full: mk()}
	tw.full.seed = tw.fast.seed // one request, one id: the second verification is a retransmission
	return tw
}

var twinSrc = Source{Addr: netip.MustParseAddrPort("192.168.1.20:5062"), Local: netip.MustParseAddrPort("192.168.1.1:5060"), Transport: "udp"}

// run gives data to both; handled tells whether the fast path read it.
// Where it did, the two answers and the two location tables must agree.
func (tw twin) run(t *testing.T, data []byte) (handled bool) {
	_, handled = tw.answer(t, data)
	return handled
}

// answer is run that also returns the fast path's answer.
func (tw twin) answer(t *testing.T, data []byte) (out []byte, handled bool) {
	t.Helper()
	var b fastBuf
	answered, handled := tw.fast.handleFast(data, twinSrc, &b)
	if !handled {
		if tw.fast.Stats.FastPath.Load() != 0 {
			t.Fatal("FastPath counted a datagram the fast path left alone")
		}
		return nil, false
	}
	msg, err := sip.NewParser().ParseSIP(data)
	if err != nil {
		t.Fatalf("the fast path answered what sipgo cannot parse (%v):\n%s", err, data)
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		t.Fatalf("the fast path answered a response:\n%s", data)
	}
	res := tw.full.Handle(req, twinSrc)
	if (res != nil) != answered {
		t.Fatalf("fast path answered %v, full path %v, to:\n%s", answered, res != nil, data)
	}
	if res != nil {
		got, err := sip.NewParser().ParseSIP(b.out)
		if err != nil {
			t.Fatalf("fast path's answer does not parse (%v):\n%s", err, b.out)
		}
		var want bytes.Buffer
		res.StringWrite(&want)
		if g, w := normalize(t, got.(*sip.Response)), normalize(t, res); g != w {
			t.Fatalf("answers differ to:\n%s\nfast:\n%s\nfull:\n%s", data, b.out, want.Bytes())
		}
	}
	if g, w := bindings(tw.fast), bindings(tw.full); g != w {
		t.Fatalf("bindings differ after:\n%s\nfast: %s\nfull: %s", data, g, w)
	}
	for _, c := range []struct {
		name       string
		fast, full uint64
	}{
		{"registers", tw.fast.Stats.Registers.Load(), tw.full.Stats.Registers.Load()},
		{"auth failures", tw.fast.Stats.AuthFailures.Load(), tw.full.Stats.AuthFailures.Load()},
		{"dropped", tw.fast.Stats.Dropped.Load(), tw.full.Stats.Dropped.Load()},
		{"refused", tw.fast.Stats.Refused.Load(), tw.full.Stats.Refused.Load()},
	} {
		if c.fast != c.full {
			t.Fatalf("%s: fast %d, full %d after:\n%s", c.name, c.fast, c.full, data)
		}
	}
	return b.out, true
}

var nonceRe = regexp.MustCompile(`nonce="[^"]*"`)

// normalize writes a response's start line and headers, one per line,
// as sipgo reads them, with the parts that differ by design blanked: the
// To tag (a fresh one each answer), the challenge's nonce (fresh each).
func normalize(t *testing.T, res *sip.Response) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d %s\n", res.SipVersion, res.StatusCode, res.Reason)
	for _, h := range res.Headers() {
		v := h.Value()
		switch h := h.(type) {
		case *sip.ToHeader:
			if !h.Params.Has("tag") {
				t.Fatal("a response without a To tag")
			}
			c := *h
			c.Params = slices.Clone(h.Params)
			c.Params.Remove("tag")
			v = c.Value()
		case *sip.ContentLengthHeader:
			continue // sipgo writes it on its own; the fast path writes it as 0
		}
		if strings.EqualFold(h.Name(), "WWW-Authenticate") {
			v = nonceRe.ReplaceAllString(v, `nonce=""`)
		}
		fmt.Fprintf(&b, "%s: %s\n", strings.ToLower(h.Name()), v)
	}
	return b.String()
}

func bindings(r *Registrar) string {
	var out []string
	for _, aor := range []string{"101", "102"} {
		for _, b := range r.Location().Lookup(aor, twinNow) {
			out = append(out, fmt.Sprintf("%+v", b))
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// fastCase is a REGISTER as phones write them, for the tests and the fuzz
// seeds. {AUTH} becomes a good Authorization for 101.
func fastCases() []string {
	base := func(to, extra string) string {
		return "REGISTER sip:192.168.1.1 SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bK776asdhds;rport\r\n" +
			"Max-Forwards: 70\r\n" +
			"From: \"Ivanov\" <sip:101@192.168.1.1>;tag=456248\r\n" +
			"To: " + to + "\r\n" +
			"Call-ID: 843817637684230@998sdasdh09\r\n" +
			"CSeq: 1826 REGISTER\r\n" + extra + "Content-Length: 0\r\n\r\n"
	}
	to := "\"Ivanov\" <sip:101@192.168.1.1>"
	return []string{
		base(to, "Contact: <sip:101@192.168.1.20:5062>\r\nExpires: 300\r\n"),
		base(to, "Contact: <sip:101@192.168.1.20:5062>\r\nExpires: 300\r\nUser-Agent: Yealink SIP-T46U 108.86.0.45\r\n{AUTH}"),
		base(to, "Contact: <sip:101@192.168.1.20:5062;transport=udp;ob>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\";reg-id=1;expires=600;methods=\"INVITE,BYE,CANCEL\"\r\n{AUTH}"),
		base("<sip:101@192.168.1.1>;tag=abc", "m: <sip:101@192.168.1.20:5062>;expires=120, \"Desk\" <sip:101@192.168.1.21:5060>;q=0.5\r\nSupported: path, outbound\r\n{AUTH}"),
		base(to, "Contact: <sip:101@192.168.1.20:5062>\r\nExpires: 10\r\n{AUTH}"), // 423
		base(to, "Contact: <sip:101@192.168.1.20:5062>;expires=0\r\n{AUTH}"),      // removal
		base(to, "{AUTH}"), // query
		base("<sip:102@192.168.1.1>", "Contact: <sip:102@192.168.1.20:5062>\r\n{AUTH}"),                                                 // 101's password for 102
		base(to, "Contact: <sip:101@192.168.1.20:5062>\r\nAuthorization: Digest username=\"101\", realm=\"callgate\", nonce=\"x\"\r\n"), // malformed
		base(to, "Contact: <sip:101@192.168.1.20:5062>\r\nAuthorization: Digest username=\"101\", realm=\"callgate\", nonce=\"x\", uri=\"sip:192.168.1.1\", response=\"00000000000000000000000000000000\"\r\n"),
		base(to, "Contact: <sip:101@192.168.1.20:5062>\r\nUser-Agent: "+strings.Repeat("Long agent ", 20)+"\r\n{AUTH}"),
		"REGISTER sip:192.168.1.1:5060;transport=udp SIP/2.0\r\nv: SIP/2.0/UDP 192.168.1.20:5062;rport=5062;branch=z9hG4bKa\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKb\r\n" +
			"f: <sip:101@192.168.1.1>;tag=1\r\nt: <sip:101@192.168.1.1>\r\ni: abc@host\r\nCSeq: 7 REGISTER\r\nMax-Forwards: 69\r\nl: 0\r\n\r\n",
	}
}

// withAuth fills {AUTH} with a good credential from auth's challenge.
func withAuth(t testing.TB, auth *digest.Server, s string) []byte {
	ch, err := icdigest.ParseChallenge(auth.Challenges(false)[0])
	if err != nil {
		t.Fatal(err)
	}
	cred, err := icdigest.Digest(ch, icdigest.Options{Method: "REGISTER", URI: "sip:192.168.1.1", Username: "101", Password: "Phone101pass", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	return []byte(strings.ReplaceAll(s, "{AUTH}", "Authorization: "+cred.String()+"\r\n"))
}

func newAuth() *digest.Server {
	return digest.NewServer("callgate", []digest.Algorithm{digest.MD5, digest.SHA256}, time.Minute)
}

func TestFastPathMatchesParser(t *testing.T) {
	auth := newAuth()
	tw := newTwin(auth)
	codes := map[int]bool{}
	for i, c := range fastCases() {
		data := withAuth(t, auth, c)
		out, handled := tw.answer(t, data)
		if !handled {
			t.Fatalf("case %d went to the full path:\n%s", i, data)
		}
		codes[statusOf(out)] = true
		again, _ := tw.answer(t, data) // a retransmission
		if c := statusOf(again); c != statusOf(out) && c != 401 {
			t.Errorf("case %d: %d, then %d to its retransmission", i, statusOf(out), c)
		}
	}
	for _, want := range []int{200, 401, 400, 403, 423} {
		if !codes[want] {
			t.Errorf("no case answered %d (got %v)", want, codes)
		}
	}
	if n := len(tw.fast.Location().Lookup("101", twinNow)); n != 3 {
		t.Errorf("101 has %d bindings, want 3 (MaxContacts)", n)
	}
}

func statusOf(b []byte) int {
	var code int
	fmt.Sscanf(string(b), "SIP/2.0 %d", &code)
	return code
}

// TestFastPathLeavesTheUnusual: what the fast path cannot read with
// certainty goes to sipgo, which then answers it as before.
func TestFastPathLeavesTheUnusual(t *testing.T) {
	auth := newAuth()
	good := string(withAuth(t, auth, fastCases()[1]))
	swap := func(old, new string) string {
		if !strings.Contains(good, old) {
			t.Fatalf("no %q in the case", old)
		}
		return strings.Replace(good, old, new, 1)
	}
	for name, data := range map[string]string{
		"folded header":      swap("Expires: 300\r\n", "Expires:\r\n 300\r\n"),
		"comma-joined Vias":  swap(";rport\r\n", ";rport, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\n"),
		"IPv6 contact":       swap("<sip:101@192.168.1.20:5062>", "<sip:101@[fd00::20]:5062>"),
		"escaped user":       swap("<sip:101@192.168.1.20:5062>", "<sip:1%301@192.168.1.20:5062>"),
		"bare contact":       swap("<sip:101@192.168.1.20:5062>", "sip:101@192.168.1.20:5062"),
		"wildcard":           swap("<sip:101@192.168.1.20:5062>", "*"),
		"a body":             swap("Content-Length: 0\r\n\r\n", "Content-Length: 2\r\n\r\nhi"),
		"another version":    swap("SIP/2.0\r\n", "SIP/2.1\r\n"),
		"sips":               swap("REGISTER sip:", "REGISTER sips:"),
		"repeated parameter": swap("<sip:101@192.168.1.20:5062>", "<sip:101@192.168.1.20:5062>;expires=60;expires=70"),
		"leading-zero port":  swap("<sip:101@192.168.1.20:5062>", "<sip:101@192.168.1.20:05062>"),
		"Route":              swap("Expires: 300\r\n", "Expires: 300\r\nRoute: <sip:192.168.1.1;lr>\r\n"),
		"Require":            swap("Expires: 300\r\n", "Expires: 300\r\nRequire: gruu\r\n"),
		"two Expires":        swap("Expires: 300\r\n", "Expires: 300\r\nExpires: 60\r\n"),
		"no Max-Forwards":    swap("Max-Forwards: 70\r\n", ""),
		"two Call-IDs":       swap("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nCall-ID: x\r\n"),
		"CSeq of INVITE":     swap("1826 REGISTER", "1826 INVITE"),
		"scanner":            swap("Yealink SIP-T46U 108.86.0.45", "friendly-scanner"),
		"space before colon": swap("Expires: 300", "Expires : 300"),
		"lone CR":            swap("Expires: 300", "Expires: 3\r00"),
		"no blank line":      strings.TrimSuffix(good, "\r\n"),
	} {
		tw := newTwin(auth)
		if tw.run(t, []byte(data)) {
			t.Errorf("%s: the fast path answered it", name)
		}
	}
}

// FuzzFastPathMatchesParser: whatever the fast path answers, the full
// path answers the same way and leaves the same bindings. The seeds are
// the shared SIP corpus, RFC 4475's torture messages and REGISTERs as
// phones write them, with good credentials.
func FuzzFastPathMatchesParser(f *testing.F) {
	siptest.AddMessages(f)
	auth := newAuth()
	for _, c := range fastCases() {
		f.Add(withAuth(f, auth, c))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		newTwin(auth).run(t, data)
	})
}
