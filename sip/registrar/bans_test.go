package registrar

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"callgate/sip/digest"
	"callgate/sip/guard"
	"callgate/sip/location"

	"github.com/emiago/sipgo/sip"
	icdigest "github.com/icholy/digest"
)

// newBanRegistrar has max_failures 3, max_failures_per_ip 6 and logs to buf.
func newBanRegistrar(buf *bytes.Buffer) *Registrar {
	log := slog.New(slog.NewTextHandler(buf, nil))
	cfg := Config{MinExpires: time.Minute, MaxExpires: time.Hour, DefaultExpires: 10 * time.Minute, MaxContacts: 2,
		AllowNetworks: []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16")}, ServerName: "callgate-test",
		Scanners: guard.NewScanners(guard.DefaultScannerUserAgents), Log: log}
	g := guard.New(guard.Config{MaxFailures: 3, MaxFailuresPerIP: 6, Window: time.Minute, BanTime: time.Minute, Log: log})
	return New(cfg, digest.NewServer("callgate", []digest.Algorithm{digest.MD5}, time.Minute),
		secrets{"101": "Phone101pass", "102": "Phone102pass", "103": "Phone103pass"}, g, location.New())
}

func at(port uint16) Source {
	return Source{Addr: netip.AddrPortFrom(phoneSrc.Addr.Addr(), port), Local: phoneSrc.Local, Transport: "udp"}
}

// attempt registers the address to (To) with digest credentials of user and
// pass from src; nil means no answer at all.
func attempt(t *testing.T, r *Registrar, src Source, to, user, pass string) *sip.Response {
	t.Helper()
	p := newPhone(t, r, to, pass)
	p.src = src
	res := r.Handle(p.request("Contact: <sip:"+to+"@10.0.0.5>\r\n", ""), src)
	if res == nil || res.StatusCode != 401 {
		return res
	}
	ch, err := icdigest.ParseChallenge(res.GetHeader("WWW-Authenticate").Value())
	if err != nil {
		t.Fatal(err)
	}
	cred, err := icdigest.Digest(ch, icdigest.Options{Method: "REGISTER", URI: "sip:callgate", Username: user, Password: pass})
	if err != nil {
		t.Fatal(err)
	}
	return r.Handle(p.request("Contact: <sip:"+to+"@10.0.0.5>\r\n", cred.String()), src)
}

func status(res *sip.Response) string {
	if res == nil {
		return "no answer"
	}
	return fmt.Sprint(res.StatusCode, " ", res.Reason)
}

// shape is a response without what differs between any two answers (tags,
// branch, nonce): what a scanner can compare.
func shape(res *sip.Response) string {
	if res == nil {
		return "no answer"
	}
	var names []string
	for _, h := range res.Headers() {
		names = append(names, h.Name())
	}
	return status(res) + " " + strings.Join(names, ",")
}

// Every failure gets the same answer: an unknown user, a known user's wrong
// password, and the right password for someone else's address.
func TestFailuresAnsweredIdentically(t *testing.T) {
	r := newBanRegistrar(&bytes.Buffer{})
	unknown := attempt(t, r, at(7001), "555", "555", "guess")
	wrong := attempt(t, r, at(7002), "101", "101", "guess")
	right := attempt(t, r, at(7003), "103", "101", "Phone101pass")
	if shape(unknown) != shape(wrong) || shape(wrong) != shape(right) || unknown.StatusCode != 403 || unknown.Reason != "Forbidden" {
		t.Fatalf("answers differ:\nunknown %s\nwrong   %s\nright   %s", shape(unknown), shape(wrong), shape(right))
	}
	// Without credentials, existing and non-existing extensions look alike.
	first := func(to string) *sip.Response {
		p := newPhone(t, r, to, "")
		return r.Handle(p.request("Contact: <sip:"+to+"@10.0.0.5>\r\n", ""), at(7004))
	}
	if a, b := first("101"), first("999"); shape(a) != shape(b) || a.StatusCode != 401 {
		t.Fatalf("challenges differ: %s / %s", shape(a), shape(b))
	}
}

// The bypass of the claimed-user exemption: To: 103 with username="101"
// guesses. The identity banned is 101 at the IP, whatever To says, and the
// right password cannot be told from a wrong one.
func TestClaimedUserBypassClosed(t *testing.T) {
	r := newBanRegistrar(&bytes.Buffer{})
	if res := attempt(t, r, at(7000), "103", "103", "Phone103pass"); res.StatusCode != 200 {
		t.Fatalf("103 login: %s", status(res))
	}
	for i := 0; i < 3; i++ {
		if res := attempt(t, r, at(uint16(7001+i)), "103", "101", "guess"); status(res) != "403 Forbidden" {
			t.Fatalf("guess %d: %s", i, status(res))
		}
	}
	for _, pass := range []string{"guess", "Phone101pass"} {
		if res := attempt(t, r, at(7100), "103", "101", pass); res != nil {
			t.Fatalf("101 guessed with %s after its ban: %s", pass, status(res))
		}
		if res := attempt(t, r, at(7101), "101", "101", pass); res != nil {
			t.Fatalf("101 registering itself with %s after its ban: %s", pass, status(res))
		}
	}
	// The user whose address was claimed is not harmed.
	if res := attempt(t, r, at(7000), "103", "103", "Phone103pass"); res.StatusCode != 200 {
		t.Fatalf("103 after the guesses: %s", status(res))
	}
}

// A phone behind a NAT address that is banned, which never logged in from
// there, still gets challenged and registers; a wrong guess from the banned
// IP gets no answer, and bans that user name at once.
func TestBannedIPLetsACorrectPhoneIn(t *testing.T) {
	var buf bytes.Buffer
	r := newBanRegistrar(&buf)
	for i := 0; i < 6; i++ { // a scanner spraying users from rotating ports
		attempt(t, r, at(uint16(6000+i)), "2"+fmt.Sprint(i), "2"+fmt.Sprint(i), "guess")
	}
	if !strings.Contains(buf.String(), `msg="sip source banned" source=192.168.1.20:6005 ip=192.168.1.20 user=25 reason=wrong_password scope=ip`) {
		t.Fatalf("IP ban not logged:\n%s", buf.String())
	}
	if res := attempt(t, r, at(7000), "102", "102", "Phone102pass"); status(res) != "200 OK" {
		t.Fatalf("correct phone at a banned IP: %s", status(res))
	}
	if res := attempt(t, r, at(7001), "101", "101", "guess"); res != nil {
		t.Fatalf("wrong guess from a banned IP answered: %s", status(res))
	}
	if res := attempt(t, r, at(7002), "101", "101", "Phone101pass"); res != nil {
		t.Fatalf("second guess for 101 from a banned IP answered: %s", status(res))
	}
	if res := attempt(t, r, at(7003), "103", "101", "Phone101pass"); res != nil {
		t.Fatalf("right password of a banned identity for another address answered: %s", status(res))
	}
	// The phone that got in keeps working.
	if res := attempt(t, r, at(7000), "102", "102", "Phone102pass"); status(res) != "200 OK" {
		t.Fatalf("correct phone again: %s", status(res))
	}
	// Another IP is untouched.
	if res := attempt(t, r, Source{Addr: netip.MustParseAddrPort("192.168.1.30:5060"), Local: phoneSrc.Local, Transport: "udp"}, "101", "101", "guess"); status(res) != "403 Forbidden" {
		t.Fatalf("another IP: %s", status(res))
	}
}

func invite(user, ua, auth string) *sip.Request {
	raw := "INVITE sip:79161234567@callgate SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKx" + user + "\r\n" +
		"From: <sip:" + user + "@callgate>;tag=1\r\nTo: <sip:79161234567@callgate>\r\nCall-ID: c-" + user + auth[:min(len(auth), 60)] + "\r\nCSeq: 1 INVITE\r\n"
	if ua != "" {
		raw += "User-Agent: " + ua + "\r\n"
	}
	if auth != "" {
		raw += "Proxy-Authorization: " + auth + "\r\n"
	}
	msg, err := sip.NewParser().ParseSIP([]byte(raw + "Content-Length: 0\r\n\r\n"))
	if err != nil {
		panic(err)
	}
	return msg.(*sip.Request)
}

// authorize places a call as user with pass from src: the authenticated
// user, or the answer (nil: none).
func authorize(t *testing.T, r *Registrar, src netip.AddrPort, user, pass string) (string, *sip.Response) {
	t.Helper()
	got, res := r.AuthorizeRequest(invite(user, "", ""), src)
	if res == nil || res.StatusCode != 407 {
		return got, res
	}
	ch, _ := icdigest.ParseChallenge(res.GetHeader("Proxy-Authenticate").Value())
	cred, _ := icdigest.Digest(ch, icdigest.Options{Method: "INVITE", URI: "sip:79161234567@callgate", Username: user, Password: pass})
	return r.AuthorizeRequest(invite(user, "", cred.String()), src)
}

func TestInviteAuthUnderBans(t *testing.T) {
	r := newBanRegistrar(&bytes.Buffer{})
	if u, res := authorize(t, r, at(7000).Addr, "555", "guess"); u != "" || status(res) != "403 Forbidden" {
		t.Fatalf("unknown user: %q %s", u, status(res))
	}
	if u, res := authorize(t, r, at(7000).Addr, "101", "guess"); u != "" || status(res) != "403 Forbidden" {
		t.Fatalf("wrong password: %q %s", u, status(res))
	}
	for i := 0; i < 6; i++ {
		authorize(t, r, at(uint16(6000+i)).Addr, "2"+fmt.Sprint(i), "guess")
	}
	if u, res := authorize(t, r, at(7001).Addr, "102", "Phone102pass"); u != "102" {
		t.Fatalf("correct phone at a banned IP: %q %s", u, status(res))
	}
	if u, res := authorize(t, r, at(7002).Addr, "101", "guess"); u != "" || res != nil {
		t.Fatalf("wrong guess at a banned IP: %q %s", u, status(res))
	}
	if u, res := authorize(t, r, at(7003).Addr, "101", "Phone101pass"); u != "" || res != nil {
		t.Fatalf("second guess for 101 at a banned IP: %q %s", u, status(res))
	}
}

// Desk PIN failures count toward the source's ban.
func TestAuthFailureCountsTowardBan(t *testing.T) {
	var buf bytes.Buffer
	r := newBanRegistrar(&buf)
	src := at(7000)
	if res := attempt(t, r, src, "101", "101", "Phone101pass"); status(res) != "200 OK" {
		t.Fatal(status(res))
	}
	for i := 0; i < 3; i++ {
		r.AuthFailure(src.Addr, "101", ReasonWrongPIN)
	}
	if r.Stats.AuthFailures.Load() != 3 || !strings.Contains(buf.String(), `msg="sip auth failure" source=192.168.1.20:7000 ip=192.168.1.20 user=101 reason=wrong_pin`) {
		t.Fatalf("failures %d, log:\n%s", r.Stats.AuthFailures.Load(), buf.String())
	}
	if res := attempt(t, r, src, "101", "101", "Phone101pass"); res != nil {
		t.Fatalf("PIN guesser's source still answered: %s", status(res))
	}
}

func udpProps(port int) sip.TransportReadProps {
	return sip.TransportReadProps{Transport: "UDP", LocalAddr: &net.UDPAddr{IP: net.IPv4(192, 168, 1, 1), Port: 5060},
		RemoteAddr: &net.UDPAddr{IP: net.IPv4(192, 168, 1, 20), Port: port}}
}

type capture struct {
	net.PacketConn
	out [][]byte
}

func (c *capture) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.out = append(c.out, append([]byte(nil), b...))
	return len(b), nil
}

func TestUDPFilterDropsBannedSourcesAndScanners(t *testing.T) {
	var buf bytes.Buffer
	r := newBanRegistrar(&buf)
	pc := &capture{}
	filter := r.UDPFilter(func(string) net.PacketConn { return pc })
	raw := func(method, ua string) []byte {
		s := method + " sip:100@192.168.1.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK" + method + "\r\n" +
			"From: <sip:100@192.168.1.1>;tag=1\r\nTo: <sip:100@192.168.1.1>\r\nCall-ID: scan-" + method + "\r\nCSeq: 1 " + method + "\r\nMax-Forwards: 70\r\n"
		if ua != "" {
			s += "User-Agent: " + ua + "\r\n"
		}
		return []byte(s + "Content-Length: 0\r\n\r\n")
	}
	for _, m := range []string{"OPTIONS", "INVITE", "REGISTER"} {
		pc.out = nil
		if out, _ := filter(udpProps(5060), raw(m, "friendly-scanner")); out != nil || len(pc.out) != 0 {
			t.Errorf("%s from a scanner answered or passed", m)
		}
	}
	if strings.Count(buf.String(), `msg="sip scanner dropped" source=192.168.1.20:5060 ip=192.168.1.20`) != 1 {
		t.Errorf("scanner not logged exactly once a minute:\n%s", buf.String())
	}
	if r.Stats.Scanners.Load() != 3 {
		t.Errorf("scanners counted %d", r.Stats.Scanners.Load())
	}
	if out, _ := filter(udpProps(5060), raw("OPTIONS", "Yealink SIP-T46S")); out == nil {
		t.Error("a phone's OPTIONS dropped")
	}
	pc.out = nil
	if out, _ := filter(udpProps(5060), raw("REGISTER", "Yealink SIP-T46S")); out != nil || len(pc.out) != 1 || !bytes.HasPrefix(pc.out[0], []byte("SIP/2.0 401")) {
		t.Errorf("a phone's REGISTER not challenged: %q", pc.out)
	}
	// An empty list turns the check off.
	off := *r.conf()
	off.Scanners = guard.NewScanners(nil)
	r.SetConfig(off)
	if out, _ := filter(udpProps(5060), raw("OPTIONS", "friendly-scanner")); out == nil {
		t.Error("scanner dropped with the list empty")
	}
	off.Scanners = guard.NewScanners(guard.DefaultScannerUserAgents)
	r.SetConfig(off)
	// A banned IP:port gets nothing, another port of the same IP does.
	for i := 0; i < 3; i++ {
		r.AuthFailure(netip.MustParseAddrPort("192.168.1.20:5070"), "101", ReasonWrongPassword)
	}
	if out, _ := filter(udpProps(5070), raw("INVITE", "")); out != nil {
		t.Error("request from a banned source passed")
	}
	if out, _ := filter(udpProps(5071), raw("INVITE", "")); out == nil {
		t.Error("request from another port of the IP dropped")
	}
	if out, _ := filter(udpProps(5070), []byte("SIP/2.0 200 OK\r\n\r\n")); out == nil {
		t.Error("response dropped")
	}
}

func TestScreen(t *testing.T) {
	r := newBanRegistrar(&bytes.Buffer{})
	src := netip.MustParseAddrPort("192.168.1.20:5060")
	if !r.Screen(invite("101", "sipcli/v1.8", ""), src) || r.Screen(invite("101", "Grandstream", ""), src) {
		t.Fatal("scanner screening wrong")
	}
	for i := 0; i < 3; i++ {
		r.AuthFailure(src, "101", ReasonWrongPassword)
	}
	if !r.Screen(invite("102", "Grandstream", ""), src) || r.Screen(invite("102", "Grandstream", ""), netip.MustParseAddrPort("192.168.1.20:5061")) {
		t.Fatal("banned source screening wrong")
	}
}

func FuzzUDPFilterBansAndScanners(f *testing.F) {
	r := newBanRegistrar(&bytes.Buffer{})
	pc := &capture{}
	filter := r.UDPFilter(func(string) net.PacketConn { return pc })
	f.Add([]byte("REGISTER sip:callgate SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1\r\nFrom: <sip:101@callgate>;tag=1\r\nTo: <sip:101@callgate>\r\nCall-ID: a\r\nCSeq: 1 REGISTER\r\nUser-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n"), uint16(5060))
	f.Add([]byte("OPTIONS sip:100@x SIP/2.0\r\nUser-Agent: sipvicious\r\n\r\n"), uint16(5061))
	f.Add([]byte("REGISTER sip:callgate SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1\r\nFrom: <sip:101@callgate>;tag=1\r\nTo: <sip:103@callgate>\r\nCall-ID: b\r\nCSeq: 2 REGISTER\r\nAuthorization: Digest username=\"101\", realm=\"callgate\", nonce=\"x\", uri=\"sip:callgate\", response=\"0\"\r\nContent-Length: 0\r\n\r\n"), uint16(5062))
	f.Add([]byte("SIP/2.0 200 OK\r\n\r\n"), uint16(5060))
	f.Fuzz(func(t *testing.T, data []byte, port uint16) {
		pc.out = nil
		_, _ = filter(udpProps(int(port)), data)
		if len(pc.out) > 1 {
			t.Fatalf("%d answers to one datagram", len(pc.out))
		}
	})
}
