package registrar

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"callgate/sip/digest"
	"callgate/sip/guard"
	"callgate/sip/location"
	"callgate/sip/sipnet"

	"github.com/emiago/sipgo/sip"
	icdigest "github.com/icholy/digest"
)

type secrets map[string]string

func (s secrets) HA1(user string, alg digest.Algorithm) (string, bool) {
	p, ok := s[user]
	if !ok {
		return "", false
	}
	return digest.HA1(alg, user, "callgate", p), true
}

func newTestRegistrar() *Registrar {
	cfg := Config{MinExpires: time.Minute, MaxExpires: time.Hour, DefaultExpires: 10 * time.Minute, MaxContacts: 2,
		AllowNetworks: []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("127.0.0.0/8")}, ServerName: "callgate-test"}
	g := guard.New(guard.Config{MaxFailures: 3, MaxFailuresPerIP: 10, Window: time.Minute, BanTime: time.Minute})
	return New(cfg, digest.NewServer("callgate", []digest.Algorithm{digest.MD5, digest.SHA256}, time.Minute),
		secrets{"101": "Phone101pass", "102": "Phone102pass"}, g, location.New())
}

var phoneSrc = Source{Addr: netip.MustParseAddrPort("192.168.1.20:5060"), Local: netip.MustParseAddrPort("192.168.1.1:5060"), Transport: "udp"}

type phone struct {
	t      *testing.T
	r      *Registrar
	user   string
	pass   string
	src    Source
	callID string
	cseq   int
}

func newPhone(t *testing.T, r *Registrar, user, pass string) *phone {
	return &phone{t: t, r: r, user: user, pass: pass, src: phoneSrc, callID: fmt.Sprintf("call-%s-%d", user, time.Now().UnixNano())}
}

func (p *phone) request(extra string, auth string) *sip.Request {
	p.cseq++
	raw := "REGISTER sip:callgate SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK" + fmt.Sprint(p.cseq, p.callID) + ";rport\r\n" +
		"From: <sip:" + p.user + "@callgate>;tag=ft1\r\n" +
		"To: <sip:" + p.user + "@callgate>\r\n" +
		"Call-ID: " + p.callID + "\r\n" +
		"CSeq: " + fmt.Sprint(p.cseq) + " REGISTER\r\nMax-Forwards: 70\r\n" + extra
	if auth != "" {
		raw += "Authorization: " + auth + "\r\n"
	}
	raw += "Content-Length: 0\r\n\r\n"
	msg, err := sip.NewParser().ParseSIP([]byte(raw))
	if err != nil {
		p.t.Fatalf("parse %q: %v", raw, err)
	}
	return msg.(*sip.Request)
}

// register sends REGISTER, answers a challenge and returns the final response.
func (p *phone) register(extra string) *sip.Response {
	p.t.Helper()
	res := p.r.Handle(p.request(extra, ""), p.src)
	if res == nil || res.StatusCode != 401 {
		return res
	}
	h := res.GetHeader("WWW-Authenticate")
	ch, err := icdigest.ParseChallenge(h.Value())
	if err != nil {
		p.t.Fatal(err)
	}
	cred, err := icdigest.Digest(ch, icdigest.Options{Method: "REGISTER", URI: "sip:callgate", Username: p.user, Password: p.pass})
	if err != nil {
		p.t.Fatal(err)
	}
	return p.r.Handle(p.request(extra, cred.String()), p.src)
}

func TestChallengeThenRegister(t *testing.T) {
	r := newTestRegistrar()
	p := newPhone(t, r, "101", "Phone101pass")
	first := r.Handle(p.request("Contact: <sip:101@10.0.0.5:5060>\r\n", ""), p.src)
	if first.StatusCode != 401 || len(first.GetHeaders("WWW-Authenticate")) != 2 {
		t.Fatalf("first response %v", first)
	}
	if v := first.Via(); v == nil || !strings.Contains(v.Params.String(), "received=192.168.1.20") || !strings.Contains(v.Params.String(), "rport=5060") {
		t.Fatalf("Via lacks received/rport: %v", first.Via())
	}
	res := p.register("Contact: <sip:101@10.0.0.5:5060>\r\nExpires: 300\r\nUser-Agent: TestPhone\r\n")
	if res.StatusCode != 200 {
		t.Fatalf("register: %v", res)
	}
	if c := res.GetHeader("Contact"); c == nil || !strings.Contains(c.Value(), "expires=300") {
		t.Fatalf("contact in 200: %v", res)
	}
	b := r.Location().Lookup("101", time.Now())
	if len(b) != 1 || b[0].Source != "192.168.1.20:5060" || b[0].Contact != "sip:101@10.0.0.5:5060" || b[0].UserAgent != "TestPhone" {
		t.Fatalf("binding = %+v", b)
	}
	if r.Stats.AuthFailures.Load() != 0 {
		t.Fatal("a normal challenge counted as a failure")
	}
}

func TestExpiresPolicy(t *testing.T) {
	r := newTestRegistrar()
	p := newPhone(t, r, "101", "Phone101pass")
	res := p.register("Contact: <sip:101@10.0.0.5>\r\nExpires: 10\r\n")
	if res.StatusCode != 423 || res.GetHeader("Min-Expires").Value() != "60" {
		t.Fatalf("brief interval: %v", res)
	}
	res = p.register("Contact: <sip:101@10.0.0.5>;expires=99999\r\n")
	if res.StatusCode != 200 || !strings.Contains(res.GetHeader("Contact").Value(), "expires=3600") {
		t.Fatalf("long interval not capped: %v", res)
	}
	res = p.register("Contact: <sip:101@10.0.0.5>;expires=0\r\n")
	if res.StatusCode != 200 || len(r.Location().Lookup("101", time.Now())) != 0 {
		t.Fatalf("expires=0 did not remove: %v", res)
	}
}

func TestSeveralContactsWildcardAndQuery(t *testing.T) {
	r := newTestRegistrar()
	p := newPhone(t, r, "101", "Phone101pass")
	if res := p.register("Contact: <sip:101@10.0.0.5>, <sip:101@10.0.0.6>\r\n"); res.StatusCode != 200 || len(res.GetHeaders("Contact")) != 2 {
		t.Fatalf("two contacts: %v", res)
	}
	// A third device beyond max_contacts=2 replaces the oldest.
	p2 := newPhone(t, r, "101", "Phone101pass")
	time.Sleep(time.Millisecond) // distinct registration times for "oldest"
	if res := p2.register("Contact: <sip:101@10.0.0.7>\r\n"); res.StatusCode != 200 {
		t.Fatal(res)
	}
	if n := len(r.Location().Lookup("101", time.Now())); n != 2 {
		t.Fatalf("%d bindings, want max 2", n)
	}
	// A query (no Contact) lists bindings and changes nothing.
	if res := p.register(""); res.StatusCode != 200 || len(res.GetHeaders("Contact")) != 2 {
		t.Fatalf("query: %v", res)
	}
	if res := p.register("Contact: *\r\n"); res.StatusCode != 400 {
		t.Fatalf("wildcard without Expires: 0 must be refused: %v", res)
	}
	if res := p.register("Contact: *\r\nExpires: 0\r\n"); res.StatusCode != 200 || r.Location().Len() != 0 {
		t.Fatalf("wildcard unregister: %v, %d left", res, r.Location().Len())
	}
}

func TestOutOfOrderCSeq(t *testing.T) {
	r := newTestRegistrar()
	p := newPhone(t, r, "101", "Phone101pass")
	p.cseq = 10
	if res := p.register("Contact: <sip:101@10.0.0.5>\r\n"); res.StatusCode != 200 {
		t.Fatal(res)
	}
	p.cseq = 2
	if res := p.register("Contact: <sip:101@10.0.0.5>\r\n"); res.StatusCode != 500 {
		t.Fatalf("older CSeq accepted: %v", res)
	}
}

func TestWrongPasswordBansSourceOnly(t *testing.T) {
	r := newTestRegistrar()
	bad := newPhone(t, r, "101", "guess")
	for i := 0; i < 3; i++ {
		if res := bad.register("Contact: <sip:101@10.0.0.5>\r\n"); res == nil || res.StatusCode != 403 {
			t.Fatalf("attempt %d: %v", i, res)
		}
	}
	if r.Stats.AuthFailures.Load() != 3 {
		t.Fatalf("failures = %d", r.Stats.AuthFailures.Load())
	}
	if res := r.Handle(bad.request("Contact: <sip:101@10.0.0.5>\r\n", ""), bad.src); res != nil {
		t.Fatalf("banned source answered: %v", res)
	}
	good := newPhone(t, r, "102", "Phone102pass")
	good.src.Addr = netip.AddrPortFrom(bad.src.Addr.Addr(), 5070)
	if res := good.register("Contact: <sip:102@10.0.0.9>\r\n"); res == nil || res.StatusCode != 200 {
		t.Fatalf("other phone behind the same address: %v", res)
	}
}

func TestForeignAORAndNetwork(t *testing.T) {
	r := newTestRegistrar()
	p := newPhone(t, r, "101", "Phone101pass")
	// Authenticate as 101 but register 102.
	req := p.request("Contact: <sip:102@10.0.0.5>\r\n", "")
	req.To().Address.User = "102"
	res := r.Handle(req, p.src)
	ch, _ := icdigest.ParseChallenge(res.GetHeader("WWW-Authenticate").Value())
	cred, _ := icdigest.Digest(ch, icdigest.Options{Method: "REGISTER", URI: "sip:callgate", Username: "101", Password: "Phone101pass"})
	req = p.request("Contact: <sip:102@10.0.0.5>\r\n", cred.String())
	req.To().Address.User = "102"
	if res := r.Handle(req, p.src); res.StatusCode != 403 {
		t.Fatalf("registered someone else's extension: %v", res)
	}
	p.src.Addr = netip.MustParseAddrPort("8.8.8.8:5060")
	if res := p.register("Contact: <sip:101@10.0.0.5>\r\n"); res.StatusCode != 403 || !strings.Contains(res.Reason, "Network") {
		t.Fatalf("outside network: %v", res)
	}
}

func TestMalformed(t *testing.T) {
	r := newTestRegistrar()
	p := newPhone(t, r, "101", "Phone101pass")
	if res := r.Handle(p.request("Contact: <sip:101@x>\r\nExpires: soon\r\n", ""), p.src); res.StatusCode != 401 {
		t.Fatalf("challenge first, got %v", res)
	}
	if res := p.register("Contact: <sip:101@x>\r\nExpires: soon\r\n"); res.StatusCode != 400 {
		t.Fatalf("bad Expires: %v", res)
	}
	if res := r.Handle(p.request("", "Digest garbage"), p.src); res.StatusCode != 401 && res.StatusCode != 400 {
		t.Fatalf("garbage auth: %v", res)
	}
}

// passSecrets are secrets with a browser phone's pass for 101 beside its
// SIP password.
type passSecrets struct{ secrets }

func (s passSecrets) AlternateHA1s(user string, alg digest.Algorithm) []digest.Alternate {
	if user != "101" {
		return nil
	}
	return []digest.Alternate{{HA1: digest.HA1(alg, user, "callgate", "minted-pass-0123"), Tag: "session-1"}}
}

// A browser phone's pass registers over WebSocket only: over UDP or TCP
// it is a wrong password, so a leaked pass cannot leave a desk-phone
// binding behind its session.
func TestPassOnlyOverWebSocket(t *testing.T) {
	r := newTestRegistrar()
	r.secrets, r.deskSecrets = passSecrets{r.secrets.(secrets)}, primaryOnly{passSecrets{r.secrets.(secrets)}}
	cfg := *r.conf()
	cfg.MaxContacts = 5
	r.SetConfig(cfg)
	for i, c := range []struct {
		transport sipnet.Transport
		pass      string
		code      int
	}{
		{sipnet.WS, "minted-pass-0123", 200},
		{sipnet.UDP, "minted-pass-0123", 403},
		{sipnet.TCP, "minted-pass-0123", 403},
		{sipnet.UDP, "Phone101pass", 200}, // the SIP password, anywhere
		{sipnet.WS, "Phone101pass", 200},
	} {
		p := newPhone(t, r, "101", c.pass)
		p.src.Transport = c.transport
		if res := p.register(fmt.Sprintf("Contact: <sip:101@10.0.0.5:%d>\r\nExpires: 300\r\n", 5060+i)); res == nil || res.StatusCode != c.code {
			t.Fatalf("%s with %s: %v, want %d", c.transport, c.pass, res, c.code)
		}
	}
	// The pass's session logs out: the binding the pass made goes, the
	// ones made with the SIP password stay.
	now := time.Now()
	before := len(r.loc.Lookup("101", now))
	if n := r.loc.DropPass("session-1", now); n != 1 || len(r.loc.Lookup("101", now)) != before-1 {
		t.Fatalf("dropped %d of %d bindings, want the pass's one", n, before)
	}
}

// The UDP path records the listener a phone registered on as a plain
// IPv4 address:port, however the socket's address is held (net.IPv4 gives
// the 16-byte form).
func TestUDPRegistrationRecordsLocalAddress(t *testing.T) {
	r := newTestRegistrar()
	pc := &discardConn{}
	filter := r.UDPFilter(func(string) net.PacketConn { return pc })
	props := sip.TransportReadProps{Transport: "UDP", LocalAddr: &net.UDPAddr{IP: net.IPv4(192, 168, 1, 1), Port: 5060},
		RemoteAddr: &net.UDPAddr{IP: net.IPv4(192, 168, 1, 20), Port: 5062}}
	msg := func(cseq int, auth string) []byte {
		s := "REGISTER sip:192.168.1.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bKloc" + fmt.Sprint(cseq) + ";rport\r\n" +
			"From: <sip:101@192.168.1.1>;tag=abc\r\nTo: <sip:101@192.168.1.1>\r\nCall-ID: local-addr\r\nCSeq: " + fmt.Sprint(cseq) + " REGISTER\r\n" +
			"Contact: <sip:101@192.168.1.20:5062>\r\nExpires: 300\r\nMax-Forwards: 70\r\n"
		if auth != "" {
			s += "Authorization: " + auth + "\r\n"
		}
		return []byte(s + "Content-Length: 0\r\n\r\n")
	}
	filter(props, msg(1, ""))
	hdr := string(pc.last)
	i := strings.Index(hdr, "WWW-Authenticate: ")
	if i < 0 {
		t.Fatalf("no challenge: %s", hdr)
	}
	ch, err := icdigest.ParseChallenge(hdr[i+18 : i+strings.Index(hdr[i:], "\r\n")])
	if err != nil {
		t.Fatal(err)
	}
	cred, _ := icdigest.Digest(ch, icdigest.Options{Method: "REGISTER", URI: "sip:192.168.1.1", Username: "101", Password: "Phone101pass", Count: 1})
	filter(props, msg(2, cred.String()))
	if !strings.HasPrefix(string(pc.last), "SIP/2.0 200") {
		t.Fatalf("register: %s", pc.last)
	}
	if b := r.Location().Lookup("101", time.Now()); len(b) != 1 || b[0].Local != "192.168.1.1:5060" || b[0].Source != "192.168.1.20:5062" {
		t.Fatalf("bindings %+v", b)
	}
}
