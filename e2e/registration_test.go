package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"callgate/sip/siptest"
)

func TestSiptestPhonesRegisterUDPAndTCP(t *testing.T) {
	d := startDaemon(t, newDaemonConfig(t, ""))
	udp := newPhone(t, d, siptest.PhoneConfig{User: "101", Password: "Phone101pass"})
	tcp := newPhone(t, d, siptest.PhoneConfig{User: "103", Password: "Phone103pass", Transport: "tcp"})
	mustRegister(t, udp)
	mustRegister(t, tcp)
	d.waitMetric("callgate_registered_contacts", 2, 5*time.Second)
	// callgate reaches both: the TCP phone over the connection it opened.
	waitOptions(t, udp, 5*time.Second)
	waitOptions(t, tcp, 5*time.Second)
	if d.metric("callgate_sip_auth_failures_total") != 0 {
		t.Fatal("normal challenge/response counted as failures")
	}
	if res, err := udp.UnregisterAll(withTimeout(t, 5*time.Second)); err != nil || res.StatusCode != 200 {
		t.Fatalf("unregister: %v %v", res, err)
	}
	d.waitMetric("callgate_registered_contacts", 1, 5*time.Second)
	d.stop()
}

func TestSippRegistersOverUDPAndTCP(t *testing.T) {
	sipp := needTool(t, "sipp")
	d := startDaemon(t, newDaemonConfig(t, ""))
	scenario, _ := filepath.Abs("../testdata/sipp/register.xml")
	for _, tr := range []string{"u1", "t1"} {
		dir := t.TempDir()
		cmd := exec.Command(sipp, d.sipAddr(), "-sf", scenario, "-t", tr, "-s", "101", "-au", "101", "-ap", "Phone101pass",
			"-i", "127.0.0.1", "-p", "0", "-m", "3", "-r", "10", "-timeout", "20", "-nostdin", "-trace_err", "-error_file", filepath.Join(dir, "err.log"))
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			errs, _ := os.ReadFile(filepath.Join(dir, "err.log"))
			t.Fatalf("sipp -t %s failed: %v\n%s\n%s", tr, err, tail(string(out), 2000), errs)
		}
	}
	if d.metric("callgate_sip_register_total") != 6 {
		t.Fatalf("register_total = %v, want 6", d.metric("callgate_sip_register_total"))
	}
	// sipp writes REGISTER plainly: over UDP each registration's two
	// requests (challenged, then authorized) take the fast path; TCP's
	// go through sipgo's transactions.
	if got := d.metric("callgate_sip_register_fast_total"); got != 6 {
		t.Fatalf("register_fast_total = %v, want 6", got)
	}
	// sipp's calls share one Contact per transport.
	d.waitMetric("callgate_registered_contacts", 2, 5*time.Second)
}

func TestBaresipRegisters(t *testing.T) {
	baresip := needTool(t, "baresip")
	d := startDaemon(t, newDaemonConfig(t, ""))
	dir := t.TempDir()
	port := freePort(t)
	conf := "sip_listen 127.0.0.1:" + itoa(port) + "\n" + "net_interface 127.0.0.1\n" +
		"module_path /usr/lib/baresip/modules\n" +
		"module g711.so\nmodule aufile.so\n" +
		"module_app account.so\nmodule_app menu.so\n" +
		"audio_player aufile,/dev/null\naudio_source aufile,/dev/null\n" +
		"rtp_ports " + itoa(30000+port%1000*2) + "-" + itoa(30010+port%1000*2) + "\n"
	os.WriteFile(filepath.Join(dir, "config"), []byte(conf), 0o600)
	os.WriteFile(filepath.Join(dir, "accounts"), []byte("<sip:102@"+d.sipAddr()+";transport=udp>;auth_pass=Phone101pass;regint=300;answermode=auto\n"), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, baresip, "-f", dir)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("baresip output:\n%s", out.String())
		}
	})
	d.waitFor("baresip registered", 15*time.Second, func() bool { return d.metric("callgate_registered_contacts") == 1 })
	d.waitFor("baresip reports its binding", 5*time.Second, func() bool { return strings.Contains(out.String(), "200 OK") })
	if d.metric("callgate_sip_auth_failures_total") != 0 {
		t.Fatal("baresip's digest counted as failure")
	}
}

func TestSHA256Digest(t *testing.T) {
	cfg := newDaemonConfig(t, "")
	cfg.SIPExtra = `digest_algorithms = ["SHA-256"]` // nothing else to fall back to
	d := startDaemon(t, cfg)
	p := newPhone(t, d, siptest.PhoneConfig{User: "101", Password: "Phone101pass"})
	mustRegister(t, p)
	if d.metric("callgate_registered_contacts") != 1 {
		t.Fatal("not registered with SHA-256")
	}
	if !strings.Contains(d.log.String(), "callgate running") {
		t.Fatal("daemon log incomplete")
	}
}

func TestPrivateContactReachedAtSourceAddress(t *testing.T) {
	d := startDaemon(t, newDaemonConfig(t, ""))
	// The phone believes it is 10.99.99.99 (unreachable from here); only its
	// real source address works.
	p := newPhone(t, d, siptest.PhoneConfig{User: "101", Password: "Phone101pass", ContactHost: "10.99.99.99:5060"})
	mustRegister(t, p)
	req := waitOptions(t, p, 5*time.Second)
	if req.Recipient.Host != "10.99.99.99" {
		t.Fatalf("OPTIONS Request-URI %s, want the phone's own Contact", req.Recipient.String())
	}
	if !strings.HasPrefix(req.Source(), "127.0.0.1:") {
		t.Fatalf("OPTIONS came from %s", req.Source())
	}
}

func TestRegistrationsSurviveKill9(t *testing.T) {
	cfg := newDaemonConfig(t, "")
	d := startDaemon(t, cfg)
	p := newPhone(t, d, siptest.PhoneConfig{User: "101", Password: "Phone101pass", ContactHost: "10.99.99.99:5060"})
	p2 := newPhone(t, d, siptest.PhoneConfig{User: "103", Password: "Phone103pass", Transport: "udp"})
	mustRegister(t, p)
	mustRegister(t, p2)
	d.waitMetric("callgate_location_stored_bindings", 2, 5*time.Second)
	d.kill()
	// Drain what the first instance sent.
	for _, ph := range []*siptest.Phone{p, p2} {
		for len(ph.Requests) > 0 {
			<-ph.Requests
		}
	}
	d2 := startDaemon(t, cfg)
	d2.waitMetric("callgate_registered_contacts", 2, 5*time.Second)
	// The restarted daemon reaches the phone without a new REGISTER.
	waitOptions(t, p, 5*time.Second)
	waitOptions(t, p2, 5*time.Second)
	if d2.metric("callgate_sip_register_total") != 0 {
		t.Fatal("phones registered again")
	}
	d2.stop()
}
