package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"callgate/sip/siptest"
)

// The CRM connectors do not depend on the HTTP API: callgate started with an
// empty http.listen and both CRMs enabled registers its RetailCRM module and
// delivers an answered inbound call to RetailCRM (popup, hangup, history)
// and to Megaplan. Without the API the call history cannot be read, so the
// test asserts on what the stand-ins received.
func TestCRMWithoutHTTPGetsCalls(t *testing.T) {
	st, mp := crmStandIns(t)
	vpbx, err := siptest.NewVPBX(siptest.VPBXConfig{Domain: "vpbx.test", Accounts: map[string]string{"sales1": "Secret123"}, Grant: 300, ChallengeInvites: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vpbx.Close)

	cfg := newDaemonConfig(t, "")
	// RetailCRM requires public_url (where it would reach the API through a
	// tunnel); nothing listens there in this test.
	cfg.HTTPExtra = `public_url = "https://callgate.example.ru"`
	cfg.IvanovExtra = "retailcrm_user = 7\nmegaplan_user = 1000007\n"
	port := portBlock(t, 100)
	cfg.Extra = upstreamSection(vpbx.Addr()) + fmt.Sprintf(`[media]
rtp_ports = "%d-%d"
bind = "127.0.0.1"
[calls]
ring_timeout = "3s"
[recording]
dir = %q
min_free = "0"
[crm.retailcrm]
enabled = true
url = %q
api_key = %q
site = "shop"
retry_max = %q
[crm.megaplan]
enabled = true
url = %q
username = %q
password = %q
rps = 50
poll = "1s"
retry_max = %q
`, port, port+99, filepath.Join(cfg.DataDir, "recordings"), st.URL, retailKey, crmRetryMax, mp.URL, megaplanUser, megaplanPassword, crmRetryMax)
	d := startWithoutHTTP(t, cfg)
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", cfg.HTTPPort), time.Second); err == nil {
		c.Close()
		t.Fatal("callgate listens for HTTP although http.listen is empty")
	}
	d.waitFor("sales1 registered upstream", 10*time.Second, func() bool { _, ok := vpbx.Binding("sales1"); return ok })
	d.waitFor("RetailCRM module registered", 10*time.Second, func() bool { m, _ := st.Module("callgate"); return m != nil })

	o := &office{t: t, d: d, vpbx: vpbx, phones: map[string]*siptest.Phone{}}
	for _, ext := range []string{"101", "102"} {
		p := newPhone(t, d, siptest.PhoneConfig{User: ext, Password: "Phone101pass"})
		mustRegister(t, p)
		o.phones[ext] = p
	}
	ctx := withTimeout(t, 30*time.Second)
	vpbxSide, _, _ := o.inbound(ctx, "127.0.0.1:30990", "127.0.0.1:30992")
	<-nextCall(t, o.phones["102"]).Gone()
	time.Sleep(300 * time.Millisecond) // talk
	if err := vpbxSide.Hangup(ctx); err != nil {
		t.Fatal(err)
	}

	d.waitFor("popup, hangup and history in RetailCRM", 15*time.Second, func() bool { return len(st.Events()) == 2 && len(st.Calls()) == 1 })
	ev := st.Events()
	if ev[0].Type != "in" || ev[0].Phone != "79161234567" || len(ev[0].UserIDs) != 1 || ev[0].UserIDs[0] != 7 || ev[0].CallExternalID == "" ||
		ev[1].Type != "hangup" || ev[1].HangupStatus != "answered" || ev[1].CallExternalID != ev[0].CallExternalID {
		t.Fatalf("RetailCRM events %+v", ev)
	}
	id := ev[0].CallExternalID
	if h := st.Calls()[0]; h.Result != "answered" || h.UserID != 7 || h.ExternalID != id+"-1" || h.Phone != "79161234567" {
		t.Fatalf("RetailCRM history %+v", h)
	}
	mc := megaplanCall(o, mp, id, "finished")
	if mc.Type != "in" || mc.FromPhone != "+79161234567" || mc.ToUser == nil || mc.ToUser.ID != "1000007" ||
		strings.Join(mc.States, ",") != "calling,talking,finished" {
		t.Fatalf("Megaplan call %+v", mc)
	}
	if len(st.Violations())+len(mp.Violations()) > 0 {
		t.Fatalf("CRM API rules broken: %v %v", st.Violations(), mp.Violations())
	}
	d.stop()
}

// startWithoutHTTP runs the binary with cfg's configuration but an empty
// http.listen, and waits for its start-up line (there is no /readyz to ask).
func startWithoutHTTP(t *testing.T, cfg daemonConfig) *daemon {
	t.Helper()
	listen := fmt.Sprintf("listen = %q\n", fmt.Sprintf("127.0.0.1:%d", cfg.HTTPPort))
	toml := cfg.toml()
	if !strings.Contains(toml, listen) {
		t.Fatalf("configuration has no %q to empty", listen)
	}
	path := filepath.Join(t.TempDir(), "callgate.toml")
	if err := os.WriteFile(path, []byte(strings.Replace(toml, listen, "listen = \"\"\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, cfg: cfg, path: path, log: &syncBuffer{}, done: make(chan error, 1)}
	d.cmd = exec.Command(binPath, "run", "-config", path)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if !d.exited {
			d.cmd.Process.Kill()
			<-d.done
		}
		if strings.Contains(d.log.String(), "WARNING: DATA RACE") {
			t.Errorf("the race detector found a data race in callgate")
		}
		if t.Failed() {
			t.Logf("callgate log:\n%s", d.log.String())
		}
	})
	d.waitFor("callgate running", 10*time.Second, func() bool { return strings.Contains(d.log.String(), "callgate running") })
	return d
}
