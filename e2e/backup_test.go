package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"callgate/crm/crmtest"
	"callgate/gateway/calls"
	"callgate/media/g711"
	"callgate/media/rtptest"
	"callgate/sip/siptest"
)

// loadCall is one call of the load: its caller number, when the VPBX sent
// the INVITE and when its hang-up was answered.
type loadCall struct {
	caller     string
	start, end time.Time
	err        error
}

// answerAll answers every call that rings ivanov's line 101 with a phone
// sending a 1000 Hz tone, until ctx ends; line 102's ringing is left to be
// cancelled. It returns how many answers failed.
func answerAll(ctx context.Context, o *office) *atomic.Int64 {
	failed := &atomic.Int64{}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-o.phones["102"].Calls:
			case in := <-o.phones["101"].Calls:
				go func() {
					peer, err := rtptest.NewPeer(1000, g711.PCMA)
					if err != nil {
						failed.Add(1)
						return
					}
					defer peer.Close()
					c, err := in.Answer(ctx, siptest.SDP(peer.Addr().String()))
					if err != nil {
						failed.Add(1)
						return
					}
					if to, err := siptest.MediaAddr(in.Request.Body()); err == nil {
						peer.SendTo(to)
					}
					select {
					case <-c.Done():
					case <-ctx.Done():
					}
				}()
			}
		}
	}()
	return failed
}

// placeCall has the VPBX call sales1 from caller with a 440 Hz tone, holds
// the call for hold once answered and hangs up.
func placeCall(ctx context.Context, o *office, caller string, hold time.Duration) loadCall {
	lc := loadCall{caller: caller, start: time.Now()}
	peer, err := rtptest.NewPeer(440, g711.PCMA)
	if err != nil {
		lc.err = err
		return lc
	}
	defer peer.Close()
	c, err := o.vpbx.Invite(ctx, "sales1", caller, siptest.SDP(peer.Addr().String()))
	if err != nil {
		lc.err = fmt.Errorf("call from %s: %w", caller, err)
		return lc
	}
	if to, err := siptest.MediaAddr(c.Remote); err == nil {
		peer.SendTo(to)
	}
	time.Sleep(hold)
	if err := c.Hangup(ctx); err != nil {
		lc.err = fmt.Errorf("hang up %s: %w", caller, err)
	}
	lc.end = time.Now()
	return lc
}

// history is every call in the daemon's history, by outside number.
func history(t *testing.T, d *daemon) map[string]calls.Record {
	t.Helper()
	res, b := d.do(t, "GET", "/api/v1/calls?limit=500", testToken)
	var list struct{ Calls []calls.Record }
	if res.StatusCode != 200 || json.Unmarshal(b, &list) != nil {
		t.Fatalf("history: %d %s", res.StatusCode, b)
	}
	out := map[string]calls.Record{}
	for _, r := range list.Calls {
		out[r.Outside] = r
	}
	return out
}

func e164(caller string) string { return "+" + caller }

// `callgate backup` against the running daemon while calls arrive at 50 a
// second with RTP both ways, then `callgate restore` into a fresh data_dir
// and a daemon started on it: the call history from before the backup,
// the CRM outbox (the CRM was down), the phones' registrations and the
// link-signing key are all there.
func TestBackupDuringCallsThenRestore(t *testing.T) {
	st, _ := crmStandIns(t)
	opts := crmOfficeOpts(st, nil, "", "")
	opts.RTPPorts = 400 // up to 100 calls at once
	opts.Extra += fmt.Sprintf("[backup]\ndir = %q\n", filepath.Join(t.TempDir(), "backups"))
	o := newOffice(t, opts)
	o.d.waitFor("module registered", 10*time.Second, func() bool { m, _ := st.Module("callgate"); return m != nil })
	st.SetMode(crmtest.Down)
	ctx := withTimeout(t, 150*time.Second)
	answerFailed := answerAll(ctx, o)

	// Before the load: five calls with a recording each, one of which gets
	// a signed link.
	var before []loadCall
	for i := range 5 {
		lc := placeCall(ctx, o, fmt.Sprintf("7915%07d", i), 700*time.Millisecond)
		if lc.err != nil {
			t.Fatal(lc.err)
		}
		before = append(before, lc)
	}
	var rec calls.Record
	o.d.waitFor("the first calls in the history", 10*time.Second, func() bool {
		rec = history(t, o.d)[e164(before[0].caller)]
		return !rec.Ended.IsZero() && len(rec.Legs) == 1 && rec.Legs[0].Recording != ""
	})
	res, b := o.d.do(t, "POST", "/api/v1/recordings/"+rec.ID+"-1/link", testToken)
	var link struct{ URL string }
	if json.Unmarshal(b, &link) != nil || res.StatusCode != 200 {
		t.Fatalf("mint a link: %d %s", res.StatusCode, b)
	}
	wav, err := os.ReadFile(filepath.Join(o.recDir, rec.Legs[0].Recording))
	if err != nil {
		t.Fatal(err)
	}
	if res, got := o.d.do(t, "GET", link.URL, ""); res.StatusCode != 200 || !bytes.Equal(got, wav) {
		t.Fatalf("signed link before the backup: %d, %d of %d bytes", res.StatusCode, len(got), len(wav))
	}
	o.d.waitMetric("callgate_location_stored_bindings", 3, 5*time.Second)
	// [backup] is on (its first copy is due a minute after start).
	if v := o.d.metric(`callgate_backup_total{result="ok"}`); v != 0 {
		t.Fatalf("callgate_backup_total{result=\"ok\"} = %v at start, want 0", v)
	}

	// The load: 100 calls at 50/s with RTP, each held 500 ms, in two
	// bursts of 50. Every call of the first has ended before the backup
	// starts, after the tenth call of the second.
	const burst, rate, hold = 50, 50, 500 * time.Millisecond
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	load := func(first int, during func()) []loadCall {
		out := make([]loadCall, burst)
		var wg sync.WaitGroup
		for i := range burst {
			<-tick.C
			wg.Add(1)
			go func() { defer wg.Done(); out[i] = placeCall(ctx, o, fmt.Sprintf("7916%07d", first+i), hold) }()
			if i == 9 && during != nil {
				during()
			}
		}
		wg.Wait()
		for _, lc := range out {
			if lc.err != nil {
				t.Fatalf("a call of the load failed: %v", lc.err)
			}
		}
		return out
	}
	inBackup := append(before, load(0, nil)...)
	o.d.waitFor("the first burst in the history", 10*time.Second, func() bool {
		h := history(t, o.d)
		for _, lc := range inBackup {
			if h[e164(lc.caller)].Ended.IsZero() {
				return false
			}
		}
		return true
	})
	// RetailCRM is down: each call waits in the outbox as its ringing and
	// hang-up events and its history upload.
	const perCall = 3
	o.d.waitFor("the first burst's CRM operations queued", 30*time.Second, func() bool {
		return o.d.metric(`callgate_crm_outbox_depth{crm="retailcrm"}`) >= float64(perCall*len(inBackup))
	})
	out := filepath.Join(t.TempDir(), "callgate-backup.db")
	var (
		t0, t1     time.Time
		backupOut  []byte
		backupErr  error
		backupDone = make(chan struct{})
	)
	load(burst, func() {
		go func() {
			defer close(backupDone)
			t0 = time.Now()
			backupOut, backupErr = exec.Command(binPath, "backup", "-config", o.d.path, "-o", out).CombinedOutput()
			t1 = time.Now()
		}()
	})
	<-backupDone
	if backupErr != nil || !bytes.Contains(backupOut, []byte("the running callgate")) {
		t.Fatalf("backup: %v\n%s", backupErr, backupOut)
	}
	t.Logf("%s(the command took %s while calls arrived at %d/s)", backupOut, t1.Sub(t0).Round(time.Millisecond), rate)
	if n := answerFailed.Load(); n > 0 {
		t.Fatalf("%d answers failed", n)
	}
	// Calls that begin after the backup are not in it.
	var after []loadCall
	for i := range 3 {
		lc := placeCall(ctx, o, fmt.Sprintf("7918%07d", i), 100*time.Millisecond)
		if lc.err != nil {
			t.Fatal(lc.err)
		}
		after = append(after, lc)
	}
	if _, errs, code := runCLI(t, "", "check-db", "-db", out); code != 0 {
		t.Fatalf("check-db of the backup: exit %d %s", code, errs)
	}
	// A running daemon's database is not replaced.
	if _, errs, code := runCLI(t, "", "restore", "-config", o.d.path, "-i", out); code != 3 || !strings.Contains(errs, "stop it first") {
		t.Fatalf("restore over the running daemon: exit %d %q", code, errs)
	}

	// Restore into a fresh data_dir and start there (the recordings
	// directory, kept apart as the README advises, is the same).
	o.d.stop()
	cfg := o.d.cfg
	cfg.DataDir = filepath.Join(t.TempDir(), "restored")
	cfgPath := filepath.Join(t.TempDir(), "restored.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg.toml()), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, errs, code := runCLI(t, "", "restore", "-config", cfgPath, "-i", out)
	if code != 0 || !strings.Contains(stdout, "restored "+out) {
		t.Fatalf("restore: exit %d %q %q", code, stdout, errs)
	}
	o.d = startDaemon(t, cfg)

	// Registrations: the phones are reachable without registering again.
	o.d.waitMetric("callgate_registered_contacts", 3, 5*time.Second)
	// History.
	h := history(t, o.d)
	for _, lc := range inBackup {
		if r, ok := h[e164(lc.caller)]; !ok || r.Ended.IsZero() || r.Result != "answered" {
			t.Fatalf("call from %s (ended %s before the backup) restored as %+v", lc.caller, t0.Sub(lc.end).Round(time.Millisecond), r)
		}
	}
	for _, lc := range after {
		if _, ok := h[e164(lc.caller)]; ok {
			t.Fatalf("call from %s began after the backup ended, yet is in it", lc.caller)
		}
	}
	// The link-signing key: the link minted before the backup still plays.
	if res, got := o.d.do(t, "GET", link.URL, ""); res.StatusCode != 200 || !bytes.Equal(got, wav) {
		t.Fatalf("signed link after the restore: %d, %d of %d bytes", res.StatusCode, len(got), len(wav))
	}
	// The CRM outbox: with RetailCRM back, the calls from before the backup
	// reach it from the restored daemon.
	if d := o.d.metric(`callgate_crm_outbox_depth{crm="retailcrm"}`); d < float64(perCall*len(inBackup)) {
		t.Fatalf("restored outbox holds %v operations for %d calls", d, len(inBackup))
	}
	st.SetMode(crmtest.Normal)
	var missing []string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		got := map[string]bool{}
		for _, c := range st.Calls() {
			got[strings.TrimPrefix(c.Phone, "+")] = true
		}
		missing = missing[:0]
		for _, lc := range inBackup {
			if !got[lc.caller] {
				missing = append(missing, lc.caller)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			have := st.Calls()
			t.Fatalf("%d of %d calls from before the backup never reached RetailCRM (e.g. %s); it has %d calls, e.g. %+v",
				len(missing), len(inBackup), missing[0], len(have), have[:min(len(have), 2)])
		}
	}
	// And the restored daemon takes calls: upstream registered, the phone
	// rung at its restored binding.
	o.d.waitMetric(`callgate_upstream_registered{account="sales1"}`, 1, 10*time.Second)
	if lc := placeCall(ctx, o, "79170000001", 300*time.Millisecond); lc.err != nil {
		t.Fatalf("a call after the restore: %v", lc.err)
	}
}

// With the HTTP API off, `callgate backup` still reaches the daemon over
// its control socket; another user could not (see gateway/control).
func TestBackupWithoutHTTP(t *testing.T) {
	cfg := newDaemonConfig(t, "")
	d := startWithoutHTTP(t, cfg)
	out := filepath.Join(t.TempDir(), "copy.db")
	stdout, errs, code := runCLI(t, "", "backup", "-config", d.path, "-o", out)
	if code != 0 || !strings.Contains(stdout, "the running callgate ("+cfg.ControlSocket+")") {
		t.Fatalf("backup: exit %d %q %q", code, stdout, errs)
	}
	if fi, err := os.Stat(cfg.ControlSocket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket: %v", err)
	}
	if _, errs, code := runCLI(t, "", "check-db", "-db", out); code != 0 {
		t.Fatalf("check-db of the copy: exit %d %s", code, errs)
	}
	d.stop()
	if _, err := os.Stat(cfg.ControlSocket); !os.IsNotExist(err) {
		t.Fatalf("control socket left after stop: %v", err)
	}
}
