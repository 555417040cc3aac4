package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"callgate/crm/crmtest"
	"callgate/gateway/calls"
	"callgate/sip/siptest"

	"github.com/chromedp/chromedp"
	"github.com/emiago/sipgo"
)

// placeOutbound has phone dial number and the VPBX answer; it returns the
// phone's and the VPBX's sides of the call.
func placeOutbound(ctx context.Context, t *testing.T, o *office, phone *siptest.Phone, number string, rtpPort int) (phoneSide, vpbxSide *siptest.Call) {
	t.Helper()
	answered := make(chan *siptest.Call, 1)
	go func() {
		select {
		case in := <-o.vpbx.Calls:
			c, err := in.Answer(ctx, siptest.SDP(fmt.Sprintf("127.0.0.1:%d", rtpPort+1)))
			if err == nil {
				answered <- c
			}
		case <-ctx.Done():
		}
	}()
	phoneSide, err := phone.Dial(ctx, number, siptest.SDP(fmt.Sprintf("127.0.0.1:%d", rtpPort)))
	if err != nil {
		t.Fatalf("dial %s: %v", number, err)
	}
	select {
	case vpbxSide = <-answered:
	case <-ctx.Done():
		t.Fatal("the VPBX did not answer")
	}
	return phoneSide, vpbxSide
}

// gone reports whether a dialog has ended.
func gone(c *siptest.Call) bool {
	select {
	case <-c.Done():
		return true
	default:
		return false
	}
}

// readyzDraining reports whether /readyz says callgate is draining.
func readyzDraining(d *daemon) bool {
	res, err := d.get("/readyz", true)
	if err != nil {
		return false
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), "draining")
}

// A stop lets the calls in progress finish: new calls get 503 with
// Retry-After, /readyz and the admin page say "draining", the ten calls go
// on until their parties hang up, callgate then exits cleanly well within
// the grace, and every call's record is complete.
func TestGracefulStopLetsCallsFinish(t *testing.T) {
	o := newOffice(t, officeOpts{ShutdownGrace: "30s", Extra: "[dial]\nper_line = 10\n"})
	ctx := withTimeout(t, 60*time.Second)
	type placed struct{ phone, vpbx *siptest.Call }
	var inCall []placed
	for i := 0; i < 10; i++ {
		phone := o.phones[[]string{"101", "103"}[i%2]]
		p, v := placeOutbound(ctx, t, o, phone, fmt.Sprintf("7916123450%d", i), 31100+4*i)
		inCall = append(inCall, placed{p, v})
	}
	o.d.waitFor("ten calls in progress", 5*time.Second, func() bool { return o.d.metric("callgate_calls_active") == 10 })

	stopped := time.Now()
	if err := o.d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	o.d.waitFor("/readyz to say draining", 5*time.Second, func() bool { return readyzDraining(o.d) })
	var admin struct{ Draining bool }
	if res, err := o.d.get("/api/v1/admin", true); err != nil || decodeJSON(res, &admin) != nil || !admin.Draining {
		t.Fatalf("the admin page does not say draining: %v %+v", err, admin)
	}

	var refused *sipgo.ErrDialogResponse
	if _, err := o.vpbx.Invite(ctx, "sales1", "79169998877", siptest.SDP("127.0.0.1:31190")); !errors.As(err, &refused) ||
		refused.Res.StatusCode != 503 || refused.Res.GetHeader("Retry-After") == nil {
		t.Fatalf("an inbound call while draining: %v, want 503 with Retry-After", err)
	}
	if _, err := o.phones["103"].Dial(ctx, "79169998866", siptest.SDP("127.0.0.1:31192")); !errors.As(err, &refused) ||
		refused.Res.StatusCode != 503 || refused.Res.GetHeader("Retry-After") == nil {
		t.Fatalf("an outbound call while draining: %v, want 503 with Retry-After", err)
	}

	time.Sleep(time.Second)
	for i, c := range inCall {
		if gone(c.phone) || gone(c.vpbx) {
			t.Fatalf("call %d was hung up by the stop", i)
		}
	}
	for i, c := range inCall {
		if err := c.phone.Hangup(ctx); err != nil {
			t.Fatalf("hang up call %d while draining: %v", i, err)
		}
		select {
		case <-c.vpbx.Done():
		case <-ctx.Done():
			t.Fatalf("call %d's BYE did not reach the VPBX", i)
		}
	}
	select {
	case err := <-o.d.done:
		o.d.exited = true
		if err != nil {
			t.Fatalf("callgate exited with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("callgate did not exit once the last call ended")
	}
	if took := time.Since(stopped); took > 25*time.Second {
		t.Fatalf("the stop took %s: it waited out the grace although every call had ended", took)
	}

	d := startDaemon(t, o.d.cfg) // the same data_dir: read what the stop left
	res, err := d.get("/api/v1/calls?limit=20", true)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var list struct{ Calls []calls.Record }
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	answered := 0
	for _, r := range list.Calls {
		if r.Ended.IsZero() || r.Result == "interrupted" {
			t.Errorf("call %s was left open or marked interrupted: %+v", r.ID, r)
		}
		if r.Result == "answered" {
			answered++
			if r.HangupBy == "system" || r.Ended.Sub(r.Answered) < time.Second {
				t.Errorf("call %s: hung up by %q after %s; want the employee, after the drain began", r.ID, r.HangupBy, r.Ended.Sub(r.Answered))
			}
		}
	}
	if answered != 10 {
		t.Fatalf("%d answered calls in the history, want the 10 that finished while draining", answered)
	}
}

// A second SIGTERM ends the grace: the calls still up are hung up at once
// and callgate exits.
func TestSecondStopSignalHangsUpAtOnce(t *testing.T) {
	o := newOffice(t, officeOpts{ShutdownGrace: "5m"})
	ctx := withTimeout(t, 30*time.Second)
	phoneSide, vpbxSide := placeOutbound(ctx, t, o, o.phones["101"], "79161234500", 31180)
	if err := o.d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	o.d.waitFor("/readyz to say draining", 5*time.Second, func() bool { return readyzDraining(o.d) })
	if gone(phoneSide) {
		t.Fatal("the first SIGTERM hung up the call")
	}
	if err := o.d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*siptest.Call{phoneSide, vpbxSide} {
		select {
		case <-c.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("the second SIGTERM did not hang up the call")
		}
	}
	select {
	case err := <-o.d.done:
		o.d.exited = true
		if err != nil {
			t.Fatalf("callgate exited with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("callgate did not exit after the second SIGTERM")
	}
}

// An admin watching the console's admin page when callgate is told to stop
// sees the "draining" line appear without reloading the page, in Russian
// and, after the language switch, in English, and it fits the page on a
// desktop (1400 px) and a phone (390 px).
func TestConsoleShowsDraining(t *testing.T) {
	st := crmtest.NewRetailCRM(retailKey)
	t.Cleanup(st.Close)
	// No RTP flows on the call: the media timeout must outlast the test.
	o := consoleOffice(t, st, officeOpts{IvanovExtra: "role = \"admin\"\n", ShutdownGrace: "60s", MediaTimeout: "2m"})
	ctx := withTimeout(t, 60*time.Second)
	phone, vpbx := placeOutbound(ctx, t, o, o.phones["103"], "79161234500", 31180)

	b := browser(t)
	login(t, b, o.d.url(""), "ivanov")
	// The call going on is in the history as a call going on: no result,
	// no duration, no player yet.
	row := value(t, b, "the call in progress in the history", chromedp.Poll[string](
		`(r => { const c = r && !r.querySelector('audio') && r.querySelector('td.result-talking'); return c ? c.textContent : '' })(document.querySelector('#calls-body tr'))`,
		chromedp.WithPollingTimeout(10*time.Second)))
	if row != "Идёт разговор" {
		t.Fatalf("the call in progress reads %q", row)
	}
	browse(t, b, "the admin page at 1400 px",
		chromedp.EmulateViewport(1400, 900),
		chromedp.Evaluate[chromedp.Void](`location.hash = '#/admin'`),
		chromedp.WaitVisible(chromedp.CSS(`#admin-upstream tr[data-account="sales1"]`)))
	if shown := value(t, b, "draining line before the stop", chromedp.Evaluate[bool](`!document.getElementById('admin-draining').hidden`)); shown {
		t.Fatal("the admin page says draining before any stop")
	}

	if err := o.d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The page refreshes itself every 5 s.
	ru := value(t, b, "the draining line appears", chromedp.Poll[string](
		`(e => !e.hidden && e.textContent)(document.getElementById('admin-draining'))`, chromedp.WithPollingTimeout(12*time.Second)))
	if !strings.Contains(ru, "Идёт остановка") {
		t.Fatalf("draining line in Russian: %q", ru)
	}
	fits := func(width int64) {
		t.Helper()
		browse(t, b, fmt.Sprintf("resize to %d px", width), chromedp.EmulateViewport(width, 900))
		out := value(t, b, "layout", chromedp.Evaluate[string](`(() => {
			const e = document.getElementById('admin-draining'), r = e.getBoundingClientRect();
			if (document.documentElement.scrollWidth > innerWidth) return 'the page scrolls sideways: ' + document.documentElement.scrollWidth + ' > ' + innerWidth;
			if (r.width === 0 || r.left < 0 || r.right > innerWidth) return 'the line is not within the page: ' + r.left + '..' + r.right;
			return '';
		})()`))
		if out != "" {
			t.Fatalf("%d px: %s", width, out)
		}
		screenshot(t, b, fmt.Sprintf("admin-draining-%d", width))
	}
	fits(1400)
	fits(390)
	browse(t, b, "switch to English", chromedp.Click(chromedp.ID("lang")))
	en := value(t, b, "the draining line in English", chromedp.Poll[string](
		`(e => !e.hidden && e.textContent.startsWith('Stopping') && e.textContent)(document.getElementById('admin-draining'))`, chromedp.WithPollingTimeout(12*time.Second)))
	if !strings.Contains(en, "new calls are refused") {
		t.Fatalf("draining line in English: %q", en)
	}
	fits(390)
	// The rest of the console at a phone's width: nothing makes the page
	// scroll sideways.
	for _, view := range []string{"calls", "missed", "stats", "desks"} {
		browse(t, b, "open "+view, chromedp.Evaluate[chromedp.Void](`location.hash = '#/`+view+`'`), chromedp.WaitVisible(chromedp.ID(view)))
		if w := value(t, b, view+" width", chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 390 {
			t.Errorf("%s at 390 px: the page is %d px wide", view, w)
		}
		screenshot(t, b, "console-390-"+view)
	}
	browse(t, b, "back to the admin page", chromedp.Evaluate[chromedp.Void](`location.hash = '#/admin'`), chromedp.WaitVisible(chromedp.ID("admin-draining")))
	fits(1400)

	if gone(phone) || gone(vpbx) {
		t.Fatal("the call in progress was hung up by the stop")
	}
	if err := phone.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-o.d.done:
		o.d.exited = true
		if err != nil {
			t.Fatalf("callgate exited with %v", err)
		}
	case <-ctx.Done():
		t.Fatal("callgate did not exit once the call ended")
	}
}
