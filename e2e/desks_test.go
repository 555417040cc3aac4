package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"callgate/sip/siptest"

	"github.com/chromedp/chromedp"
)

// Shift work: the reception desk phone (extension 110) belongs to whoever
// logs in there. ivanov logs in from the desk phone with *77*<pin> and the
// next call to him rings the desk too and is recorded as his; then petrov
// takes the desk from the console in Chromium, and the next call to him is
// answered at the desk and recorded as petrov's.
func TestShiftLoginMovesDeskExtension(t *testing.T) {
	o := consoleOffice(t, nil, officeOpts{
		IvanovExtra: "shift_pin = \"1111\"\n",
		PetrovExtra: "shift_pin = \"2222\"\n",
		Extra: secondTrunk + `[[desk]]
extension = "110"
name = "Ресепшн"
sip_password = "Desk110pass"
`,
	})
	o.d.waitMetric(`callgate_upstream_registered{account="support"}`, 1, 10*time.Second)
	desk := newPhone(t, o.d, siptest.PhoneConfig{User: "110", Password: "Desk110pass"})
	mustRegister(t, desk)
	ctx := withTimeout(t, 60*time.Second)

	// A wrong PIN is refused; ivanov's PIN logs him in at the desk.
	if _, err := desk.Dial(ctx, "*77*9999", siptest.SDP("127.0.0.1:30950")); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("wrong PIN: %v", err)
	}
	if _, err := desk.Dial(ctx, "*77*1111", siptest.SDP("127.0.0.1:30950")); err == nil || !strings.Contains(err.Error(), "603") {
		t.Fatalf("shift login: %v", err)
	}
	answerAt := func(account, from string, ring []string, at string) string {
		done := make(chan struct{})
		go func() {
			defer close(done)
			if c, err := o.vpbx.Invite(ctx, account, from, siptest.SDP("127.0.0.1:30951")); err == nil {
				time.Sleep(300 * time.Millisecond)
				_ = c.Hangup(ctx)
			}
		}()
		phones := map[string]*siptest.Phone{"110": desk}
		for k, v := range o.phones {
			phones[k] = v
		}
		var answer *siptest.IncomingCall
		var others []*siptest.IncomingCall
		for _, ext := range ring {
			c := nextCall(t, phones[ext])
			if ext == at {
				answer = c
			} else {
				others = append(others, c)
			}
		}
		if _, err := answer.Answer(ctx, siptest.SDP("127.0.0.1:30952")); err != nil {
			t.Fatal(err)
		}
		for _, c := range others {
			<-c.Gone()
		}
		<-done
		rec := o.lastCall()
		if len(rec.Legs) != 1 || rec.Legs[0].Extension != at {
			t.Fatalf("legs %+v", rec.Legs)
		}
		return rec.Legs[0].Employee
	}
	if who := answerAt("sales1", "79161234567", []string{"101", "102", "110"}, "110"); who != "ivanov" {
		t.Fatalf("the desk answered for %q during ivanov's shift", who)
	}

	// petrov takes the desk in the console.
	ctxB := browser(t)
	base := o.d.url("")
	login(t, ctxB, base, "petrov")
	browse(t, ctxB, "the desks page",
		chromedp.WaitVisible(chromedp.ID("nav-desks")),
		chromedp.Evaluate[chromedp.Void](`location.hash = '#/desks'`),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-desk="110"] button`)),
		chromedp.Click(chromedp.CSS(`tr[data-desk="110"] button`)))
	holder := value(t, ctxB, "the desk's holder", chromedp.Poll[string](
		`(() => { const td = document.querySelector('tr[data-desk="110"] td.holder'); return td && td.textContent === 'Петров Пётр' ? td.textContent : '' })()`))
	if holder != "Петров Пётр" {
		t.Fatalf("desk holder %q", holder)
	}
	screenshot(t, ctxB, "desks")
	if who := answerAt("support", "79167654321", []string{"103", "110"}, "110"); who != "petrov" {
		t.Fatalf("the desk answered for %q during petrov's shift", who)
	}
	// ivanov's calls no longer ring the desk.
	done := make(chan struct{})
	go func() {
		defer close(done)
		if c, err := o.vpbx.Invite(ctx, "sales1", "79160000001", siptest.SDP("127.0.0.1:30953")); err == nil {
			_ = c.Hangup(ctx)
		}
	}()
	in, other := nextCall(t, o.phones["101"]), nextCall(t, o.phones["102"])
	select {
	case c := <-desk.Calls:
		t.Fatalf("the desk rang for ivanov after he lost it: %s", c.From())
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := in.Answer(ctx, siptest.SDP("127.0.0.1:30954")); err != nil {
		t.Fatal(err)
	}
	<-other.Gone()
	<-done
}

// The desk follows the PC: an admin marks the reception PC's browser once
// in the console; from then on petrov logging into the console there takes
// the reception desk (its phone rings for his calls and the call is his),
// logging out frees it, and ivanov logging in next takes it.
func TestConsoleLoginAtMarkedPCTakesTheDesk(t *testing.T) {
	o := consoleOffice(t, nil, officeOpts{IvanovExtra: "role = \"admin\"\n", Extra: secondTrunk + `[[desk]]
extension = "110"
name = "Ресепшн"
sip_password = "Desk110pass"
`})
	o.d.waitMetric(`callgate_upstream_registered{account="support"}`, 1, 10*time.Second)
	desk := newPhone(t, o.d, siptest.PhoneConfig{User: "110", Password: "Desk110pass"})
	mustRegister(t, desk)
	ctx := withTimeout(t, 60*time.Second)
	b := browser(t)
	base := o.d.url("")
	holder := func() string {
		t.Helper()
		var list struct {
			Desks []struct{ Extension, Employee string }
		}
		res, err := o.d.get("/api/v1/desks", true)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if err := json.NewDecoder(res.Body).Decode(&list); err != nil || len(list.Desks) != 1 {
			t.Fatalf("desks: %v %+v", err, list)
		}
		return list.Desks[0].Employee
	}

	login(t, b, base, "ivanov")
	browse(t, b, "the admin marks this browser as the reception PC",
		chromedp.Evaluate[chromedp.Void](`location.hash = '#/desks'`),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-desk="110"] button.mark-pc`)),
		chromedp.Click(chromedp.CSS(`tr[data-desk="110"] button.mark-pc`)),
		chromedp.WaitVisible(chromedp.ID("desk-pc")))
	if text := value(t, b, "the mark's line", chromedp.Text(chromedp.ID("desk-pc-text"))); !strings.Contains(text, "Ресепшн") {
		t.Fatalf("the desks page says %q", text)
	}
	screenshot(t, b, "desk-pc-marked")
	browse(t, b, "log out", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-form")))
	if h := holder(); h != "" {
		t.Fatalf("after the admin's logout the desk is held by %q", h)
	}

	login(t, b, base, "petrov")
	if h := holder(); h != "petrov" {
		t.Fatalf("petrov logged in at the reception PC, the desk is held by %q", h)
	}
	// petrov's call rings his phone and the desk; he answers at the desk.
	done := make(chan struct{})
	go func() {
		defer close(done)
		if c, err := o.vpbx.Invite(ctx, "support", "79167654321", siptest.SDP("127.0.0.1:30955")); err == nil {
			time.Sleep(300 * time.Millisecond)
			_ = c.Hangup(ctx)
		}
	}()
	own, at := nextCall(t, o.phones["103"]), nextCall(t, desk)
	if _, err := at.Answer(ctx, siptest.SDP("127.0.0.1:30956")); err != nil {
		t.Fatal(err)
	}
	<-own.Gone()
	<-done
	if rec := o.lastCall(); len(rec.Legs) != 1 || rec.Legs[0].Extension != "110" || rec.Legs[0].Employee != "petrov" {
		t.Fatalf("the call answered at the desk: legs %+v", rec.Legs)
	}

	browse(t, b, "petrov logs out", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-form")))
	if h := holder(); h != "" {
		t.Fatalf("after petrov's logout the desk is held by %q", h)
	}
	login(t, b, base, "petrov")
	browse(t, b, "petrov logs out again", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-form")))
	login(t, b, base, "ivanov")
	if h := holder(); h != "ivanov" {
		t.Fatalf("ivanov logged in at the reception PC, the desk is held by %q", h)
	}
}
