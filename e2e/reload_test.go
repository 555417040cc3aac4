package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"callgate/gateway/api"
	"callgate/gateway/calls"
	"callgate/media/record"
	"callgate/media/rtptest"
	"callgate/sip/siptest"
)

// reloadCalls is how many calls are up while the configuration is
// reloaded: each sends tones both ways through the relay and is recorded,
// with the daemon under the race detector on a 2-core machine.
const reloadCalls = 50

// talkingCall is an outbound call from a phone to the VPBX with a tone
// each way: the outside party (440 Hz) at the VPBX, the employee (1000 Hz)
// at the phone.
type talkingCall struct {
	ext               string
	phone, vpbx       *siptest.Call
	outside, employee *rtptest.Peer
}

// talk has phone dial number, the VPBX answer, and both parties send their
// tone to the relay.
func talk(ctx context.Context, t *testing.T, o *office, phone *siptest.Phone, number string) talkingCall {
	t.Helper()
	outside, employee := tonePeers(t)
	type answer struct {
		call *siptest.Call
		in   *siptest.IncomingCall
	}
	answered := make(chan answer, 1)
	go func() {
		select {
		case in := <-o.vpbx.Calls:
			if c, err := in.Answer(ctx, siptest.SDP(outside.Addr().String())); err == nil {
				answered <- answer{c, in}
			}
		case <-ctx.Done():
		}
	}()
	phoneSide, err := phone.Dial(ctx, number, siptest.SDP(employee.Addr().String()))
	if err != nil {
		t.Fatalf("dial %s from %s: %v", number, phone.User(), err)
	}
	var a answer
	select {
	case a = <-answered:
	case <-ctx.Done():
		t.Fatal("the VPBX did not answer")
	}
	toPhoneSide, err1 := siptest.MediaAddr(phoneSide.Remote)
	toVPBXSide, err2 := siptest.MediaAddr(a.in.Request.Body())
	if err1 != nil || err2 != nil {
		t.Fatalf("relay addresses: %v %v", err1, err2)
	}
	employee.SendTo(toPhoneSide)
	outside.SendTo(toVPBXSide)
	return talkingCall{ext: phone.User(), phone: phoneSide, vpbx: a.call, outside: outside, employee: employee}
}

// rewriteConfig replaces each old text of the daemon's configuration file
// (which must occur exactly once) with its new one, and appends extra.
func rewriteConfig(t *testing.T, d *daemon, extra string, oldNew ...string) string {
	t.Helper()
	b, err := os.ReadFile(d.path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for i := 0; i+1 < len(oldNew); i += 2 {
		if n := strings.Count(text, oldNew[i]); n != 1 {
			t.Fatalf("%q occurs %d times in the configuration", oldNew[i], n)
		}
		text = strings.Replace(text, oldNew[i], oldNew[i+1], 1)
	}
	text += extra
	if err := os.WriteFile(d.path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return text
}

// sighup asks the daemon to reload and waits for the log line saying it
// did (the n-th such line).
func sighup(t *testing.T, d *daemon, line string, n int) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	d.waitFor(fmt.Sprintf("%d× %q in the log", n, line), 10*time.Second, func() bool { return strings.Count(d.log.String(), line) >= n })
}

// registered lists the extensions the admin page shows registered.
func registered(t *testing.T, d *daemon) map[string]bool {
	t.Helper()
	res, err := d.get("/api/v1/admin", true)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var v api.AdminView
	if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, p := range v.Phones {
		out[p.Extension] = true
	}
	return out
}

// wholeRecording asserts both tones in every quarter second of a leg's
// recording but its first and last half second: a gap in the media while
// the call was up would show as silence.
func wholeRecording(t *testing.T, o *office, leg calls.Leg) {
	t.Helper()
	if leg.Recording == "" {
		t.Fatalf("leg %+v has no recording", leg)
	}
	l, r, err := record.Channels(filepath.Join(o.recDir, leg.Recording))
	if err != nil {
		t.Fatal(err)
	}
	const win, edge = 2000, 4000 // samples at 8 kHz
	if len(l) < 2*edge+win {
		t.Fatalf("recording %s: only %d samples", leg.Recording, len(l))
	}
	for at := edge; at+win <= len(l)-edge; at += win {
		if !rtptest.Has(l[at:at+win], 440) || !rtptest.Has(r[at:at+win], 1000) {
			t.Fatalf("recording %s: no tones at %.2fs of %.2fs (left 440 Hz %v, right 1000 Hz %v)", leg.Recording,
				float64(at)/8000, float64(len(l))/8000, rtptest.Has(l[at:at+win], 440), rtptest.Has(r[at:at+win], 1000))
		}
	}
}

// A reload while calls are up: it adds an employee, removes one who is on
// calls, changes a SIP password, adds an upstream account and changes a
// key that needs a restart. No call drops or misses audio (every
// recording has both tones throughout, no gap over 500 ms at the
// parties), the new employee's phone registers at once, the new account
// registers with the VPBX, the removed employee's phone is gone from the
// registrations and refused once its calls end, and the changed password
// is the one that works. Then a broken file changes nothing and is
// reported with FILE:LINE in the log and in the metric.
func TestReloadKeepsCallsAndRegistrations(t *testing.T) {
	o := newOffice(t, officeOpts{Extra: "[dial]\nper_line = 60\n", RTPPorts: 400}) // 4 a call
	ctx := withTimeout(t, 5*time.Minute)
	if v := o.d.metric(`callgate_config_reload_total{result="ok"}`); v != 0 {
		t.Fatalf("reloads counted before any: %v", v)
	}
	started := o.d.metric("callgate_config_last_reload_success_timestamp_seconds")

	var up []talkingCall
	for i := range reloadCalls {
		phone := o.phones[[]string{"101", "102", "103"}[i%3]]
		up = append(up, talk(ctx, t, o, phone, fmt.Sprintf("791612%05d", i)))
	}
	o.d.waitFor("every call in progress", 10*time.Second, func() bool { return o.d.metric("callgate_calls_active") == reloadCalls })
	o.d.waitFor("every party hearing the other", 30*time.Second, func() bool {
		for _, c := range up {
			if !hears(c.outside, 1000) || !hears(c.employee, 440) {
				return false
			}
		}
		return true
	})
	for _, c := range up {
		c.outside.ResetGap()
		c.employee.ResetGap()
	}

	rewriteConfig(t, o.d, `[[upstream.account]]
user = "support"
password = "Secret456"
employee = "sidorov"
`,
		`sip_password = "Phone101pass"`, `sip_password = "Phone101new!"`,
		`id = "petrov"
name = "Петров Пётр"
extensions = ["103"]
sip_password = "Phone103pass"`, `id = "sidorov"
name = "Сидоров Сидор"
extensions = ["104"]
sip_password = "Phone104pass"`,
		`shutdown_grace = "0s"`, `shutdown_grace = "1s"`)
	reloaded := time.Now()
	sighup(t, o.d, "configuration reloaded", 1)
	sidorov := newPhone(t, o.d, siptest.PhoneConfig{User: "104", Password: "Phone104pass"})
	mustRegister(t, sidorov)
	if took := time.Since(reloaded); took > 5*time.Second {
		t.Fatalf("the new employee's phone registered %s after the reload", took)
	}
	if !strings.Contains(o.d.log.String(), `msg="configuration reloaded; needs restart" keys=calls.shutdown_grace `) {
		t.Fatal("no log line naming calls.shutdown_grace as needing a restart")
	}
	o.d.waitMetric(`callgate_upstream_registered{account="support"}`, 1, 10*time.Second)
	if b, ok := o.vpbx.Binding("support"); !ok || b.Status != 200 {
		t.Fatalf("the VPBX has no registration of the new account: %+v", b)
	}
	if o.d.metric(`callgate_upstream_registered{account="sales1"}`) != 1 {
		t.Fatal("the account that stayed lost its registration")
	}
	if v := o.d.metric(`callgate_config_reload_total{result="ok"}`); v != 1 {
		t.Fatalf("ok reloads %v, want 1", v)
	}
	if v := o.d.metric("callgate_config_last_reload_success_timestamp_seconds"); v <= started {
		t.Fatalf("last success %v, not after the start's %v", v, started)
	}
	if got := registered(t, o.d); got["103"] || !got["104"] || !got["101"] || !got["102"] {
		t.Fatalf("registered after the reload: %v, want 101, 102, 104 and not the removed 103", got)
	}

	time.Sleep(2 * time.Second) // the calls go on past the reload
	var worst time.Duration
	for i, c := range up {
		if gone(c.phone) || gone(c.vpbx) {
			t.Fatalf("call %d (%s) was dropped by the reload", i, c.ext)
		}
		for who, p := range map[string]*rtptest.Peer{"outside": c.outside, "employee": c.employee} {
			g := p.MaxGap()
			if g > 500*time.Millisecond {
				t.Fatalf("call %d (%s): the %s party heard nothing for %s during the reload", i, c.ext, who, g)
			}
			worst = max(worst, g)
		}
	}
	for _, l := range strings.Split(o.d.log.String(), "\n") {
		if strings.Contains(l, "configuration reloaded") {
			t.Logf("%d calls up; %s; worst gap at the parties %s", reloadCalls, l, worst)
		}
	}
	if res, err := o.phones["101"].RegisterWithPassword(ctx, "Phone101pass"); err != nil || res.StatusCode == 200 {
		t.Fatalf("101 registers with its old password: %v %v", res, err)
	}
	if res, err := o.phones["101"].RegisterWithPassword(ctx, "Phone101new!"); err != nil || res.StatusCode != 200 {
		t.Fatalf("101 with its new password: %v %v", res, err)
	}

	// The calls end as their parties hang up; the removed employee's
	// phone hangs up its own.
	for i, c := range up {
		end, other := c.vpbx, c.phone
		if c.ext == "103" {
			end, other = c.phone, c.vpbx
		}
		if err := end.Hangup(ctx); err != nil {
			t.Fatalf("hang up call %d (%s): %v", i, c.ext, err)
		}
		select {
		case <-other.Done():
		case <-ctx.Done():
			t.Fatalf("call %d (%s): the BYE did not reach the other party", i, c.ext)
		}
	}
	o.d.waitFor("no call in progress", 10*time.Second, func() bool { return o.d.metric("callgate_calls_active") == 0 })
	if res, err := o.phones["103"].Register(ctx, 300); err != nil || res.StatusCode == 200 {
		t.Fatalf("the removed employee's phone registers: %v %v", res, err)
	}
	if c, err := o.phones["103"].Dial(ctx, "79161299999", siptest.SDP("127.0.0.1:31998")); err == nil {
		_ = c.Hangup(ctx)
		t.Fatal("the removed employee's phone placed a call")
	}

	var list struct{ Calls []calls.Record }
	res, err := o.d.get("/api/v1/calls?limit="+strconv.Itoa(reloadCalls+5), true)
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(res.Body).Decode(&list)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	answered := 0
	for _, r := range list.Calls {
		if r.Result != "answered" {
			continue
		}
		answered++
		if len(r.Legs) != 1 || r.HangupBy == "system" {
			t.Fatalf("call %s: %d legs, hung up by %q", r.ID, len(r.Legs), r.HangupBy)
		}
		wholeRecording(t, o, r.Legs[0])
	}
	if answered != reloadCalls {
		t.Fatalf("%d answered calls in the history, want %d", answered, reloadCalls)
	}

	// A broken file changes nothing: kozlov's phone is not let in, the
	// reloaded passwords stay, and the problem's FILE:LINE is logged.
	broken := rewriteConfig(t, o.d, `[[employee]]
id = "kozlov"
extensions = ["105"]
sip_password = "Phone105pass"
role = "chief"
`, `sip_password = "Phone104pass"`, `sip_password = "Phone104next"`)
	line := 0
	for i, l := range strings.Split(broken, "\n") {
		if strings.Contains(l, `role = "chief"`) {
			line = i + 1
		}
	}
	sighup(t, o.d, "configuration reload refused", 1)
	if want := fmt.Sprintf("%s:%d:", o.d.path, line); !strings.Contains(o.d.log.String(), want) {
		t.Fatalf("the log does not name %s", want)
	}
	if v := o.d.metric(`callgate_config_reload_total{result="error"}`); v != 1 {
		t.Fatalf("error reloads %v, want 1", v)
	}
	if v := o.d.metric(`callgate_config_reload_total{result="ok"}`); v != 1 {
		t.Fatalf("ok reloads %v after the refused one, want 1", v)
	}
	kozlov := newPhone(t, o.d, siptest.PhoneConfig{User: "105", Password: "Phone105pass"})
	if res, err := kozlov.Register(ctx, 300); err != nil || res.StatusCode == 200 {
		t.Fatalf("an employee of the refused file registers: %v %v", res, err)
	}
	if res, err := sidorov.RegisterWithPassword(ctx, "Phone104pass"); err != nil || res.StatusCode != 200 {
		t.Fatalf("the refused file changed 104's password: %v %v", res, err)
	}
}
