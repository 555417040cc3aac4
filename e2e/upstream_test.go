package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"callgate/sip/siptest"
)

// sippVPBX runs sipp as the upstream registrar with a scenario from testdata.
type sippVPBX struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	dir  string
	out  *syncBuffer
	done chan error
}

func startSippVPBX(t *testing.T, scenario string) *sippVPBX {
	t.Helper()
	sipp := needTool(t, "sipp")
	port := freePort(t)
	s := &sippVPBX{t: t, addr: fmt.Sprintf("127.0.0.1:%d", port), dir: t.TempDir(), out: &syncBuffer{}, done: make(chan error, 1)}
	sf, _ := filepath.Abs("../testdata/sipp/" + scenario)
	s.cmd = exec.Command(sipp, "-sf", sf, "-i", "127.0.0.1", "-p", strconv.Itoa(port), "-m", "1", "-nostdin",
		"-trace_msg", "-message_file", filepath.Join(s.dir, "msg.log"), "-trace_err", "-error_file", filepath.Join(s.dir, "err.log"), "-timeout", "60")
	s.cmd.Dir = s.dir
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		if t.Failed() {
			errs, _ := os.ReadFile(filepath.Join(s.dir, "err.log"))
			msgs, _ := os.ReadFile(filepath.Join(s.dir, "msg.log"))
			t.Logf("sipp errors:\n%s\nsipp messages:\n%s", errs, tail(string(msgs), 4000))
		}
	})
	return s
}

// wait waits for sipp to end and fails unless its scenario succeeded.
func (s *sippVPBX) wait(timeout time.Duration) {
	s.t.Helper()
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Fatalf("sipp scenario failed: %v\n%s", err, tail(s.out.String(), 1500))
		}
	case <-time.After(timeout):
		s.t.Fatal("sipp scenario did not finish")
	}
}

type traced struct {
	at   time.Time
	cseq int
	text string
}

var cseqRe = regexp.MustCompile(`(?m)^CSeq: *(\d+) REGISTER`)

// received parses sipp's message trace for the REGISTERs it received.
func (s *sippVPBX) received() []traced {
	f, err := os.Open(filepath.Join(s.dir, "msg.log"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []traced
	var cur *traced
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "----------") {
			if cur != nil {
				out = append(out, *cur)
				cur = nil
			}
			ts := strings.TrimSpace(strings.TrimLeft(line, "- "))
			at, err := time.ParseInLocation("2006-01-02 15:04:05.000000", ts, time.Local)
			if err == nil {
				cur = &traced{at: at}
			}
			continue
		}
		if cur != nil {
			cur.text += line + "\n"
		}
	}
	if cur != nil {
		out = append(out, *cur)
	}
	var regs []traced
	for _, m := range out {
		if !strings.Contains(m.text, "message received") || !strings.Contains(m.text, "REGISTER sip:") {
			continue
		}
		if c := cseqRe.FindStringSubmatch(m.text); c != nil {
			m.cseq, _ = strconv.Atoi(c[1])
			regs = append(regs, m)
		}
	}
	return regs
}

func TestUpstreamRegistersRefreshesAndUnregistersWithSipp(t *testing.T) {
	vpbx := startSippVPBX(t, "vpbx-register-ok.xml")
	d := startDaemon(t, newDaemonConfig(t, upstreamSection(vpbx.addr)))
	d.waitMetric(`callgate_upstream_registered{account="sales1"}`, 1, 10*time.Second)
	d.waitFor("readyz 200", 5*time.Second, func() bool {
		res, err := d.get("/readyz", false)
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	})
	// sipp checks digest, refresh before the 3 s expiry, and the final
	// unregister; wait for the refresh, then stop callgate.
	d.waitFor("refresh REGISTER", 10*time.Second, func() bool { return len(vpbx.received()) >= 3 })
	d.stop()
	vpbx.wait(10 * time.Second)
	regs := vpbx.received()
	if len(regs) != 4 {
		t.Fatalf("sipp saw %d REGISTERs, want challenge, answer, refresh, unregister", len(regs))
	}
	if gap := regs[2].at.Sub(regs[1].at); gap < 2*time.Second || gap > 2900*time.Millisecond {
		t.Fatalf("refresh %s after registration, want about 80%% of 3 s", gap)
	}
	if !strings.Contains(regs[3].text, "Expires: 0") {
		t.Fatalf("last REGISTER is not an unregister:\n%s", regs[3].text)
	}
}

func TestUpstream403StopsRetrying(t *testing.T) {
	vpbx := startSippVPBX(t, "vpbx-register-403.xml")
	d := startDaemon(t, newDaemonConfig(t, upstreamSection(vpbx.addr)))
	d.waitFor("forbidden reported", 5*time.Second, func() bool {
		return strings.Contains(d.log.String(), "state=forbidden")
	})
	// sipp fails its scenario if another REGISTER arrives during its 4 s pause.
	vpbx.wait(15 * time.Second)
	if got := len(vpbx.received()); got != 1 {
		t.Fatalf("%d REGISTERs after 403, want 1", got)
	}
	if d.metric(`callgate_upstream_registered{account="sales1"}`) != 0 {
		t.Fatal("forbidden account reported registered")
	}
	res, err := d.get("/readyz", true)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 503 {
		t.Fatalf("readyz %d with the upstream account refused", res.StatusCode)
	}
}

func TestUpstreamSilentRegistrarBacksOff(t *testing.T) {
	vpbx := startSippVPBX(t, "vpbx-register-silent.xml")
	d := startDaemon(t, newDaemonConfig(t, upstreamSection(vpbx.addr)))
	// Attempts (new CSeq) after timeouts of 500 ms and backoffs starting at 400 ms, doubling.
	var attempts []traced
	d.waitFor("four attempts", 20*time.Second, func() bool {
		attempts = attempts[:0]
		last := -1
		for _, r := range vpbx.received() {
			if r.cseq != last { // retransmissions keep their CSeq
				attempts = append(attempts, r)
				last = r.cseq
			}
		}
		return len(attempts) >= 4
	})
	var gaps []time.Duration
	for i := 1; i < len(attempts); i++ {
		gaps = append(gaps, attempts[i].at.Sub(attempts[i-1].at))
	}
	// gap i = 500 ms timeout + jitter(400 ms * 2^(i)) in [half, full].
	for i, g := range gaps[:3] {
		lo := 500*time.Millisecond + (400*time.Millisecond<<i)/2
		if g < lo-50*time.Millisecond {
			t.Fatalf("attempt gap %d = %s, below %s: no backoff (gaps %v)", i, g, lo, gaps)
		}
	}
	if gaps[2] <= gaps[0] {
		t.Fatalf("backoff does not grow: %v", gaps)
	}
	if d.metric(`callgate_upstream_registered{account="sales1"}`) != 0 {
		t.Fatal("unanswered account reported registered")
	}
}

// TestUpstreamFollowsVPBX uses the Go VPBX stand-in to show /readyz and the
// metric following the registration state, and the unregister on SIGTERM.
func TestUpstreamFollowsVPBX(t *testing.T) {
	vpbx, err := siptest.NewVPBX(siptest.VPBXConfig{Domain: "vpbx.test", Accounts: map[string]string{"sales1": "Secret123"}, Grant: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer vpbx.Close()
	d := startDaemon(t, newDaemonConfig(t, upstreamSection(vpbx.Addr())))
	d.waitMetric(`callgate_upstream_registered{account="sales1"}`, 1, 10*time.Second)
	reg, ok := vpbx.Binding("sales1")
	if !ok || reg.Source != d.sipAddr() {
		t.Fatalf("registered from %q, want callgate's SIP socket %s", reg.Source, d.sipAddr())
	}
	if !strings.Contains(reg.Contact, d.sipAddr()) {
		t.Fatalf("contact %q", reg.Contact)
	}
	readyz := func() int {
		res, err := d.get("/readyz", false)
		if err != nil {
			return 0
		}
		res.Body.Close()
		return res.StatusCode
	}
	if readyz() != 200 {
		t.Fatal("not ready while registered")
	}
	// The VPBX stops answering: the next refresh (at ~1.6 s) times out.
	vpbx.SetMode(siptest.VPBXSilent)
	d.waitMetric(`callgate_upstream_registered{account="sales1"}`, 0, 10*time.Second)
	if readyz() != 503 {
		t.Fatal("ready while the upstream account is down")
	}
	// It comes back: callgate registers again by itself.
	vpbx.SetMode(siptest.VPBXAccept)
	d.waitMetric(`callgate_upstream_registered{account="sales1"}`, 1, 10*time.Second)
	d.waitFor("ready again", 5*time.Second, func() bool { return readyz() == 200 })
	d.stop()
	if _, ok := vpbx.Binding("sales1"); ok {
		t.Fatal("callgate did not unregister on SIGTERM")
	}
}
