package e2e

import (
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
