package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"callgate/sip/siptest"

	"github.com/emiago/sipgo/sip"
	icdigest "github.com/icholy/digest"
)

// Bans against real attack tools (Debian's sipvicious) and hand-made
// requests: svcrack is banned within max_failures while correct phones
// from the same IP keep working, svwar cannot tell existing extensions from
// others, the claimed-user bypass is closed, scanners get silence, desk PIN
// guesses lead to the same ban, and the sample fail2ban filter finds the
// failures in the daemon's log.

const sidorov = `[[employee]]
id = "sidorov"
name = "Sidorov"
extensions = ["104"]
sip_password = "Phone104pass"
`

// sipvicious runs one of its tools, bounded in time, against the daemon
// only, from a local port of its own (it binds 5060 by default).
func sipvicious(t *testing.T, d *daemon, tool string, args ...string) string {
	t.Helper()
	path := needTool(t, tool)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args = append(args, "-p", strconv.Itoa(d.cfg.SIPPort), "-P", strconv.Itoa(freePort(t)), "127.0.0.1")
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = t.TempDir() // svwar/svcrack keep session files in ~/.sipvicious or the cwd
	cmd.Env = append(os.Environ(), "HOME="+cmd.Dir)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %v did not finish in time:\n%s", tool, args, out)
	}
	if err != nil {
		t.Logf("%s exited with %v", tool, err)
	}
	return string(out)
}

// probe is a hand-made SIP client on a UDP port of its own.
type probe struct {
	t    *testing.T
	c    *net.UDPConn
	to   *net.UDPAddr
	ua   string
	seq  int
	call string
}

func newProbe(t *testing.T, d *daemon, ua string) *probe {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	to, _ := net.ResolveUDPAddr("udp", d.sipAddr())
	return &probe{t: t, c: c, to: to, ua: ua, call: fmt.Sprintf("probe-%d-%d", c.LocalAddr().(*net.UDPAddr).Port, time.Now().UnixNano())}
}

func (p *probe) port() int { return p.c.LocalAddr().(*net.UDPAddr).Port }

// roundTrip sends a request and returns its final response, or nil when
// none comes within wait.
func (p *probe) roundTrip(raw string, wait time.Duration) *sip.Response {
	p.t.Helper()
	if _, err := p.c.WriteToUDP([]byte(raw), p.to); err != nil {
		p.t.Fatal(err)
	}
	buf := make([]byte, 65535)
	deadline := time.Now().Add(wait)
	for {
		_ = p.c.SetReadDeadline(deadline)
		n, _, err := p.c.ReadFromUDP(buf)
		if err != nil {
			return nil
		}
		msg, err := sip.NewParser().ParseSIP(buf[:n])
		if err != nil {
			p.t.Fatalf("unparseable answer %q: %v", buf[:n], err)
		}
		if res, ok := msg.(*sip.Response); ok && res.StatusCode >= 200 {
			return res
		}
	}
}

func (p *probe) request(method, to, extra string) string {
	p.seq++
	host := p.to.String()
	s := fmt.Sprintf("%s sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s-%d;rport\r\n"+
		"From: <sip:%s@%s>;tag=pt%d\r\nTo: <sip:%s@%s>\r\nCall-ID: %s\r\nCSeq: %d %s\r\nMax-Forwards: 70\r\n"+
		"Contact: <sip:%s@%s>\r\n", method, host, p.c.LocalAddr(), p.call, p.seq, to, host, p.port(), to, host, p.call, p.seq, method, to, p.c.LocalAddr())
	if p.ua != "" {
		s += "User-Agent: " + p.ua + "\r\n"
	}
	return s + extra + "Content-Length: 0\r\n\r\n"
}

// register asks to register the address to (To and From) and answers the
// challenge with user's credentials: the final answer, nil for none.
func (p *probe) register(to, user, pass string) *sip.Response {
	p.t.Helper()
	res := p.roundTrip(p.request("REGISTER", to, "Expires: 60\r\n"), 2*time.Second)
	if res == nil || res.StatusCode != 401 {
		p.t.Fatalf("first REGISTER: want a challenge, got %s", shapeOf(res))
	}
	ch, err := icdigest.ParseChallenge(res.GetHeader("WWW-Authenticate").Value())
	if err != nil {
		p.t.Fatal(err)
	}
	cred, err := icdigest.Digest(ch, icdigest.Options{Method: "REGISTER", URI: "sip:" + p.to.String(), Username: user, Password: pass, Count: 1})
	if err != nil {
		p.t.Fatal(err)
	}
	return p.roundTrip(p.request("REGISTER", to, "Expires: 60\r\nAuthorization: "+cred.String()+"\r\n"), 1500*time.Millisecond)
}

// shapeOf is what a scanner can compare between two answers: status,
// reason and header names (tags, branches and nonces differ anyway).
func shapeOf(res *sip.Response) string {
	if res == nil {
		return "no answer"
	}
	var names []string
	for _, h := range res.Headers() {
		names = append(names, h.Name())
	}
	return fmt.Sprintf("%d %s [%s]", res.StatusCode, res.Reason, strings.Join(names, " "))
}

func TestWrongPasswordIsCountedAndBanned(t *testing.T) {
	d := startDaemon(t, newDaemonConfig(t, "")) // max_failures = 3
	bad := newPhone(t, d, siptest.PhoneConfig{User: "101", Password: "Phone101pass"})
	for i := 1; i <= 3; i++ {
		res, err := bad.RegisterWithPassword(withTimeout(t, 5*time.Second), "guess"+itoa(i))
		if err != nil || res.StatusCode != 403 {
			t.Fatalf("attempt %d: %v %v", i, res, err)
		}
	}
	d.waitMetric("callgate_sip_auth_failures_total", 3, 5*time.Second)
	d.waitMetric("callgate_sip_banned_sources", 2, 5*time.Second) // the IP:port, and the user name 101 at that IP
	// The banned source gets no answer at all, even with the right password.
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if res, err := bad.Register(ctx, 300); err == nil {
		t.Fatalf("banned source answered: %d", res.StatusCode)
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a timeout, got %v", err)
	}
	// Another phone on the same address (behind the same NAT) is not banned.
	good := newPhone(t, d, siptest.PhoneConfig{User: "103", Password: "Phone103pass"})
	mustRegister(t, good)
	if d.metric("callgate_sip_auth_failures_total") != 3 {
		t.Fatal("failure count changed by a good phone")
	}
}

// With the scanner list emptied (sipvicious always says friendly-scanner),
// svcrack is banned after max_failures (3) although the right password is
// in its dictionary, phones from the same IP keep working, and once
// scanners get the whole IP banned a phone that never logged in from there
// still gets in. svwar finds no extension.
func TestSvcrackBannedPhonesKeepWorking(t *testing.T) {
	needTool(t, "svcrack")
	needTool(t, "svwar")
	cfg := newDaemonConfig(t, sidorov)
	cfg.SIPExtra = "scanner_user_agents = []\n"
	d := startDaemon(t, cfg)
	p103 := newPhone(t, d, siptest.PhoneConfig{User: "103", Password: "Phone103pass"})
	mustRegister(t, p103)

	dict := filepath.Join(t.TempDir(), "passwords.txt")
	if err := os.WriteFile(dict, []byte("123456\n101\npassword\nqwerty\n1234\nPhone101pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := sipvicious(t, d, "svcrack", "-u", "101", "-d", dict, "--maximumtime", "3")
	if strings.Contains(out, "Phone101pass") || !strings.Contains(out, "found nothing") {
		t.Fatalf("svcrack was not stopped:\n%s", out)
	}
	d.waitMetric("callgate_sip_auth_failures_total", 3, 5*time.Second)
	if n := d.metric("callgate_sip_banned_sources"); n < 2 { // its IP:port and the user name 101 at its IP
		t.Fatalf("banned sources %v", n)
	}
	failure := regexp.MustCompile(`level=WARN msg="sip auth failure" source=127\.0\.0\.1:\d+ ip=127\.0\.0\.1 user=101 reason=wrong_password`)
	d.waitFor("3 failures logged", 5*time.Second, func() bool { return len(failure.FindAllString(d.log.String(), -1)) >= 3 })
	if n := len(failure.FindAllString(d.log.String(), -1)); n != 3 {
		t.Fatalf("%d failures logged, want 3", n)
	}
	if !regexp.MustCompile(`level=WARN msg="sip source banned" source=127\.0\.0\.1:\d+ ip=127\.0\.0\.1 user=101 reason=wrong_password scope=source`).MatchString(d.log.String()) {
		t.Fatal("ban not logged")
	}

	// Phones on the same IP keep working, including one that never logged
	// in from here before.
	mustRegister(t, p103)
	p102 := newPhone(t, d, siptest.PhoneConfig{User: "102", Password: "Phone101pass"})
	mustRegister(t, p102)

	// svwar cannot tell the extensions that exist (101-104) from the others.
	out = sipvicious(t, d, "svwar", "-e100-110", "--maximumtime", "3")
	if !strings.Contains(out, "found nothing") {
		t.Fatalf("svwar found something:\n%s", out)
	}
	for _, m := range []string{"REGISTER", "INVITE", "OPTIONS"} {
		out = sipvicious(t, d, "svwar", "--force", "-m", m, "-e100-110", "--maximumtime", "3")
		if found := regexp.MustCompile(`\|\s*10[1-4]\s*\|`).FindString(out); found != "" {
			t.Fatalf("svwar --force -m %s found %s:\n%s", m, found, out)
		}
	}

	// Guessers rotating ports and user names get the whole IP banned (20).
	for i := 0; d.metric("callgate_sip_auth_failures_total") < 20 && i < 30; i++ {
		if res := newProbe(t, d, "").register("3"+strconv.Itoa(i), "3"+strconv.Itoa(i), "guess"); shapeOf(res) != shapeOf(nil) && res.StatusCode != 403 {
			t.Fatalf("guess %d: %s", i, shapeOf(res))
		}
	}
	if !strings.Contains(d.log.String(), `scope=ip`) {
		t.Fatal("the IP was not banned")
	}
	// A phone that never logged in from this IP gets in; known phones keep
	// working; a new guess gets no answer, and the banned user name stays
	// banned even with its right password.
	p104 := newPhone(t, d, siptest.PhoneConfig{User: "104", Password: "Phone104pass"})
	mustRegister(t, p104)
	mustRegister(t, p103)
	if res := newProbe(t, d, "").register("105", "105", "guess"); res != nil {
		t.Fatalf("a wrong guess from the banned IP was answered: %s", shapeOf(res))
	}
	if res := newProbe(t, d, "").register("101", "101", "Phone101pass"); res != nil {
		t.Fatalf("the banned user name got in: %s", shapeOf(res))
	}
}

// The claimed-user bypass: To: 103 with username="101" guesses. Every
// failure is answered the same (an unknown user, a wrong password, the
// right password for another address); after max_failures the user name
// 101 is banned at this IP whatever address it claims, and the sample
// fail2ban filter finds each failure in the daemon's log.
func TestBanBypassClosedAndFail2banFilter(t *testing.T) {
	d := startDaemon(t, newDaemonConfig(t, ""))
	p103 := newPhone(t, d, siptest.PhoneConfig{User: "103", Password: "Phone103pass"})
	mustRegister(t, p103)

	wrong := newProbe(t, d, "").register("103", "101", "guess")
	unknown := newProbe(t, d, "").register("555", "555", "guess")
	right := newProbe(t, d, "").register("103", "101", "Phone101pass")
	if shapeOf(wrong) != shapeOf(unknown) || shapeOf(wrong) != shapeOf(right) || wrong.StatusCode != 403 || wrong.Reason != "Forbidden" {
		t.Fatalf("answers differ:\nwrong password %s\nunknown user   %s\nright password %s", shapeOf(wrong), shapeOf(unknown), shapeOf(right))
	}
	d.waitFor("the right password for another address logged as such", 5*time.Second, func() bool {
		return strings.Contains(d.log.String(), "user=101 reason=not_own_address")
	})
	// One more failure for 101 bans the user name at this IP (3 in all).
	newProbe(t, d, "").register("103", "101", "guess2")
	for _, pass := range []string{"guess3", "Phone101pass"} {
		if res := newProbe(t, d, "").register("103", "101", pass); res != nil {
			t.Fatalf("101 guessed (%s) after its ban: %s", pass, shapeOf(res))
		}
	}
	mustRegister(t, p103)
	if n := d.metric("callgate_sip_auth_failures_total"); n != 4 { // 3 for 101, 1 for 555
		t.Fatalf("auth failures %v, want 4", n)
	}

	// The documented fail2ban filter, run by fail2ban itself over the log.
	d.waitFor("4 failures logged", 5*time.Second, func() bool { return strings.Count(d.log.String(), `msg="sip auth failure"`) == 4 })
	if strings.Contains(d.log.String(), "Phone101pass") {
		t.Fatal("a password was logged")
	}
	hosts := fail2banHosts(t, d)
	if len(hosts) != 4 {
		t.Fatalf("fail2ban found %d failures, want 4: %q", len(hosts), hosts)
	}
	for _, h := range hosts {
		if h != "127.0.0.1" {
			t.Fatalf("fail2ban took host %q", h)
		}
	}
}

// fail2banHosts runs fail2ban-regex with docs/fail2ban's filter over the
// daemon's log and returns the address of each failure it matched.
func fail2banHosts(t *testing.T, d *daemon) []string {
	t.Helper()
	bin := needTool(t, "fail2ban-regex")
	logFile := filepath.Join(t.TempDir(), "callgate.log")
	if err := os.WriteFile(logFile, []byte(d.log.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	filter, err := filepath.Abs("../docs/fail2ban/filter.d-callgate.conf")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-o", "ip", logFile, filter).CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

// With the default scanner list, sipvicious gets no answer at all, over UDP
// and over TCP, while a phone's OPTIONS is answered.
func TestScannersGetNoAnswer(t *testing.T) {
	d := startDaemon(t, newDaemonConfig(t, ""))
	out := sipvicious(t, d, "svmap")
	if strings.Contains(out, "127.0.0.1:"+strconv.Itoa(d.cfg.SIPPort)) {
		t.Fatalf("svmap found callgate:\n%s", out)
	}
	out = sipvicious(t, d, "svwar", "--force", "-e100-105", "--maximumtime", "2")
	if regexp.MustCompile(`\|\s*10[1-3]\s*\|`).MatchString(out) {
		t.Fatalf("svwar found an extension:\n%s", out)
	}
	d.waitFor("scanner requests counted", 5*time.Second, func() bool { return d.metric("callgate_sip_scanner_dropped_total") > 0 })
	if !regexp.MustCompile(`level=WARN msg="sip scanner dropped" source=127\.0\.0\.1:\d+ ip=127\.0\.0\.1 user=\S* reason=scanner user_agent=friendly-scanner`).MatchString(d.log.String()) {
		t.Fatal("scanner not logged")
	}
	ph := newProbe(t, d, "Yealink SIP-T46S")
	if res := ph.roundTrip(ph.request("OPTIONS", "100", ""), 2*time.Second); res == nil || res.StatusCode != 200 {
		t.Fatalf("a phone's OPTIONS: %s", shapeOf(res))
	}
	sc := newProbe(t, d, "friendly-scanner")
	if res := sc.roundTrip(sc.request("OPTIONS", "100", ""), time.Second); res != nil {
		t.Fatalf("a scanner's OPTIONS over UDP: %s", shapeOf(res))
	}

	// TCP goes through the same screening.
	c, err := net.Dial("tcp", d.sipAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tcpOptions := func(ua, branch string) string {
		local := c.LocalAddr().String()
		return fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/TCP %s;branch=z9hG4bK%s\r\nFrom: <sip:100@%s>;tag=t1\r\n"+
			"To: <sip:100@%s>\r\nCall-ID: tcp-%s\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nUser-Agent: %s\r\nContent-Length: 0\r\n\r\n",
			d.sipAddr(), local, branch, local, d.sipAddr(), branch, ua)
	}
	if _, err := c.Write([]byte(tcpOptions("friendly-scanner", "scanner") + tcpOptions("Yealink SIP-T46S", "phone"))); err != nil {
		t.Fatal(err)
	}
	var got []byte
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	if !strings.Contains(string(got), "branch=z9hG4bKphone") || strings.Contains(string(got), "branch=z9hG4bKscanner") {
		t.Fatalf("over TCP the phone must be answered and the scanner not: %q", got)
	}

	// The fail2ban filter matches the scanner lines too.
	if hosts := fail2banHosts(t, d); len(hosts) == 0 {
		t.Fatal("fail2ban found no scanner line")
	}
}

// Desk PIN guesses (*77*<pin>) count as authentication failures: after
// max_failures the desk phone's source is banned.
func TestDeskPINFailuresBanTheSource(t *testing.T) {
	cfg := newDaemonConfig(t, `[[desk]]
extension = "110"
name = "Reception"
sip_password = "Desk110pass"
`)
	cfg.IvanovExtra = "shift_pin = \"1111\"\n"
	d := startDaemon(t, cfg)
	desk := newPhone(t, d, siptest.PhoneConfig{User: "110", Password: "Desk110pass"})
	mustRegister(t, desk)
	for i := 0; i < 3; i++ {
		_, err := desk.Dial(withTimeout(t, 5*time.Second), "*77*99"+strconv.Itoa(10+i), siptest.SDP("127.0.0.1:30950"))
		if err == nil || !strings.Contains(err.Error(), "403") {
			t.Fatalf("wrong PIN %d: %v", i, err)
		}
	}
	d.waitMetric("callgate_sip_auth_failures_total", 3, 5*time.Second)
	pinFailure := regexp.MustCompile(`level=WARN msg="sip auth failure" source=127\.0\.0\.1:\d+ ip=127\.0\.0\.1 user=110 reason=wrong_pin`)
	d.waitFor("PIN failures logged", 5*time.Second, func() bool { return len(pinFailure.FindAllString(d.log.String(), -1)) == 3 })
	// Its next attempt, even with the right PIN, gets no answer (sipgo's
	// client waits for Timer B, so the test waits only a while).
	got := make(chan error, 1)
	go func() {
		_, err := desk.Dial(context.Background(), "*77*1111", siptest.SDP("127.0.0.1:30950"))
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("the PIN guesser's phone was answered after its ban: %v", err)
	case <-time.After(3 * time.Second):
	}
}
