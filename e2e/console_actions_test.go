package e2e

import (
	"callgate/gateway/calls"
	"callgate/gateway/store"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"callgate/crm/crmtest"
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

// The admin page in Chromium: registered phones with their address and
// user agent, the VPBX account's state, CRM sync health, recording disk use
// and a security ban that the admin lifts. Employees are refused the page's
// data.
func TestConsoleAdminPage(t *testing.T) {
	st := crmtest.NewRetailCRM(retailKey)
	t.Cleanup(st.Close)
	o := consoleOffice(t, st, officeOpts{IvanovExtra: "role = \"admin\"\n"})
	bad := newPhone(t, o.d, siptest.PhoneConfig{User: "103", Password: "Phone103pass"})
	for i := 1; i <= 3; i++ {
		if res, err := bad.RegisterWithPassword(withTimeout(t, 5*time.Second), fmt.Sprint("guess", i)); err != nil || res.StatusCode != 403 {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	o.d.waitMetric("callgate_sip_banned_sources", 2, 5*time.Second) // the IP:port, and the user name 103 at that IP

	ctx := browser(t)
	base := o.d.url("")
	login(t, ctx, base, "ivanov")
	browse(t, ctx, "the admin page",
		chromedp.WaitVisible(chromedp.ID("nav-admin")),
		chromedp.Evaluate[chromedp.Void](`location.hash = '#/admin'`),
		chromedp.WaitVisible(chromedp.CSS(`#admin-phones tr[data-ext="101"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#admin-bans tr button`)))
	phone := value(t, ctx, "phone 101", chromedp.Text(chromedp.CSS(`#admin-phones tr[data-ext="101"]`)))
	upstream := value(t, ctx, "sales1", chromedp.Text(chromedp.CSS(`#admin-upstream tr[data-account="sales1"] td.state`)))
	crmDepth := value(t, ctx, "retailcrm", chromedp.Text(chromedp.CSS(`#admin-crm tr[data-crm="retailcrm"] td.depth`)))
	disk := value(t, ctx, "disk", chromedp.Text(chromedp.ID("admin-disk")))
	if db := value(t, ctx, "database", chromedp.Text(chromedp.ID("admin-db"))); !strings.Contains(db, "свободно") || strings.Contains(db, "свободно 0.0") {
		t.Fatalf("admin page: database %q", db)
	}
	if !strings.Contains(phone, "Иванов Иван") || !strings.Contains(phone, "127.0.0.1:") || upstream != "registered" || crmDepth != "0" || !strings.Contains(disk, "свободно") || strings.Contains(disk, "свободно 0.0") {
		t.Fatalf("admin page: phone %q, upstream %q, crm depth %q, disk %q", phone, upstream, crmDepth, disk)
	}
	screenshot(t, ctx, "admin")
	browse(t, ctx, "unban", chromedp.Click(chromedp.CSS(`#admin-bans tr button`)))
	value(t, ctx, "ban lifted", chromedp.Poll[bool](`document.querySelectorAll('#admin-bans tr').length === 0`))
	mustRegister(t, bad) // the source may register again
	o.d.waitMetric("callgate_sip_banned_sources", 0, 5*time.Second)

	// petrov, an employee, gets no admin data.
	client := apiLogin(t, base, "petrov")
	if res, _ := client.Get(base + "/api/v1/admin"); res.StatusCode != 403 {
		t.Fatalf("an employee read the admin page: %d", res.StatusCode)
	}
}

// Actions in Chromium: the click-to-call box on the second line of a
// two-line employee rings that line first; a tel: link opened through the
// console's protocol handler dials through callgate, on the line chosen.
// After a restart the console asks to log in again.
func TestConsoleClickToCallAndTelLinks(t *testing.T) {
	st := crmtest.NewRetailCRM(retailKey)
	t.Cleanup(st.Close)
	o := consoleOffice(t, st, officeOpts{})
	ctx := browser(t)
	base := o.d.url("")
	login(t, ctx, base, "ivanov")
	handler := value(t, ctx, "tel: handler", chromedp.Poll[string](`document.body.dataset.telHandler || ''`))
	if handler != "registered" {
		t.Fatalf("tel: handler %q", handler)
	}
	browse(t, ctx, "dial from line 102",
		chromedp.SendKeys(chromedp.ID("dial-number"), "8 (916) 765-43-21"),
		chromedp.SetValue(chromedp.ID("dial-line"), "102"),
		chromedp.Click(chromedp.ID("dial-submit")))
	in := nextCall(t, o.phones["102"])
	if in.From() != "79167654321" {
		t.Fatalf("line 102 shows %q", in.From())
	}
	screenshot(t, ctx, "click-to-call")
	_ = in.Reject(486, "Busy Here")
	time.Sleep(time.Second) // the first call is over
	browse(t, ctx, "open a tel: link", chromedp.Evaluate[chromedp.Void](`location.hash = '#/dial?number=`+url.QueryEscape("tel:+79161234567")+`'`))
	select {
	case in = <-o.phones["102"].Calls: // the line chosen in the box
	case <-time.After(5 * time.Second):
		state, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("dial-state")))
		t.Fatalf("the tel: link rang nothing; the console says %q", state)
	}
	if in.From() != "79161234567" {
		t.Fatalf("the tel: link rang 102 with %q", in.From())
	}
	_ = in.Reject(486, "Busy Here")

	// A restart ends console sessions: the open console goes back to the
	// login form by itself.
	o.d.stop()
	o.d = startDaemon(t, o.d.cfg)
	browse(t, ctx, "back to the login form after a restart", chromedp.WaitVisible(chromedp.ID("login-form")))
}

// The popup card in Chromium: a browser notification when the tab is in
// the background; "hang up" ends a ringing call, "transfer to…" sends an
// answered call to another extension.
func TestConsolePopupActions(t *testing.T) {
	st := crmtest.NewRetailCRM(retailKey)
	t.Cleanup(st.Close)
	o := consoleOffice(t, st, officeOpts{})
	ctx := browser(t)
	base := o.d.url("")
	login(t, ctx, base, "ivanov")
	callCtx := withTimeout(t, 40*time.Second)
	// The tab is in the background and notifications are allowed: a
	// ringing call must raise a browser notification (recorded by a stub,
	// as headless Chromium shows none).
	browse(t, ctx, "background tab", chromedp.Evaluate[chromedp.Void](`
		window.shown = [];
		window.Notification = class { constructor(title, opts) { window.shown.push(title + ': ' + opts.body); } };
		window.Notification.permission = 'granted';
		Object.defineProperty(document, 'hidden', { get: () => true });`))

	// Hang up a ringing call from the card.
	refused := make(chan error, 1)
	go func() {
		_, err := o.vpbx.Invite(callCtx, "sales1", "79160000001", siptest.SDP("127.0.0.1:30940"))
		refused <- err
	}()
	l1, l2 := nextCall(t, o.phones["101"]), nextCall(t, o.phones["102"])
	browse(t, ctx, "hang up from the card", chromedp.WaitVisible(chromedp.CSS(".popup .hangup")), chromedp.Click(chromedp.CSS(".popup .hangup")))
	if shown := value(t, ctx, "notifications", chromedp.Evaluate[[]string](`window.shown`)); len(shown) != 1 || shown[0] != "Входящий звонок: +79160000001" {
		t.Fatalf("notifications %q", shown)
	}
	if err := <-refused; err == nil {
		t.Fatal("the call hung up from the console was answered")
	}
	<-l1.Gone()
	<-l2.Gone()
	if rec := o.lastCall(); rec.HangupBy != "api" {
		t.Fatalf("hung up by %q (%s)", rec.HangupBy, rec.Reason)
	}

	// Transfer an answered call from the card to petrov's 103.
	vpbx := make(chan *siptest.Call, 1)
	go func() {
		c, _ := o.vpbx.Invite(callCtx, "sales1", "79160000002", siptest.SDP("127.0.0.1:30941"))
		vpbx <- c
	}()
	in, other := nextCall(t, o.phones["101"]), nextCall(t, o.phones["102"])
	ivanov, err := in.Answer(callCtx, siptest.SDP("127.0.0.1:30942"))
	if err != nil {
		t.Fatal(err)
	}
	<-other.Gone()
	client := <-vpbx
	browse(t, ctx, "transfer from the card",
		chromedp.WaitVisible(chromedp.CSS(".popup .transfer")),
		chromedp.Click(chromedp.CSS(".popup .transfer")),
		// SetValue, not SendKeys: chromedp 0.23's SendKeys reads the node's
		// attributes without its lock while the click is still un-hiding
		// this field (a data race inside chromedp that -race reports).
		chromedp.WaitVisible(chromedp.CSS(".popup .transfer-to")),
		chromedp.SetValue(chromedp.CSS(".popup .transfer-to"), "103"),
		chromedp.Click(chromedp.CSS(".popup .transfer-go")))
	petrov := nextCall(t, o.phones["103"])
	if _, err := petrov.Answer(callCtx, siptest.SDP("127.0.0.1:30943")); err != nil {
		t.Fatal(err)
	}
	<-ivanov.Done()
	_ = client.Hangup(callCtx)
	rec := o.lastCall()
	if len(rec.Transfers) != 1 || rec.Transfers[0].To != "petrov" || len(rec.Legs) != 2 || rec.Legs[1].Employee != "petrov" {
		t.Fatalf("transfers %+v, legs %+v", rec.Transfers, rec.Legs)
	}
}

// Statistics for a seeded period in Chromium: a week in October written to
// the database while callgate is stopped shows the expected figures.
func TestConsoleStatisticsForSeededPeriod(t *testing.T) {
	st := crmtest.NewRetailCRM(retailKey)
	t.Cleanup(st.Close)
	o := consoleOffice(t, st, officeOpts{})
	o.d.stop()
	db, err := store.Open(o.d.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	s := calls.NewStore(db)
	msk := moscow(t)
	n := 0
	put := func(day, hour int, dir, emp, result string, wait, talk float64) {
		n++
		at := time.Date(2026, 10, day, hour, 0, 0, 0, msk)
		r := calls.Record{ID: fmt.Sprint("seed-", n), Direction: dir, Outside: fmt.Sprint("+7916000000", n), Rung: []string{emp},
			Started: at, Ended: at.Add(time.Duration(wait+talk) * time.Second), Result: result, WaitSeconds: wait, TalkSeconds: talk}
		if result == "answered" {
			r.AnsweredBy, r.Answered = emp, at.Add(time.Duration(wait)*time.Second)
			r.Legs = []calls.Leg{{N: 1, Employee: emp, Extension: "101", Answered: r.Answered, Ended: r.Ended, TalkSeconds: talk}}
		}
		if err := s.Put(&r); err != nil {
			t.Fatal(err)
		}
	}
	put(5, 10, "inbound", "ivanov", "answered", 6, 120)
	put(5, 11, "inbound", "ivanov", "answered", 2, 60)
	put(5, 12, "inbound", "ivanov", "no-answer", 30, 0)
	put(6, 10, "outbound", "ivanov", "answered", 4, 180)
	put(6, 15, "inbound", "petrov", "busy", 1, 0)
	put(12, 9, "inbound", "ivanov", "answered", 5, 30) // outside the period
	db.Close()
	o.d = startDaemon(t, o.d.cfg)
	ctx := browser(t)
	base := o.d.url("")
	login(t, ctx, base, "ivanov")
	browse(t, ctx, "the seeded week",
		chromedp.Evaluate[chromedp.Void](`location.hash = '#/stats'`),
		chromedp.WaitVisible(chromedp.ID("stats-form")),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('stats-from').value = '2026-10-05'; document.getElementById('stats-to').value = '2026-10-11'`),
		chromedp.Click(chromedp.CSS(`#stats-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#stats-body tr[data-employee="ivanov"]`)))
	cells := value(t, ctx, "ivanov's week", chromedp.Evaluate[[]string](
		`[...document.querySelectorAll('#stats-body tr[data-employee="ivanov"] td')].map(td => td.textContent)`))
	// 3 inbound (2 answered, 1 missed), 1 outbound; talk 6:00, average 2:00, wait (6+2)/2 = 0:04.
	want := []string{"Иванов Иван", "3", "1", "2", "1", "6:00", "2:00", "0:04"}
	if strings.Join(cells, "|") != strings.Join(want, "|") {
		t.Fatalf("ivanov's week %q, want %q", cells, want)
	}
	days := value(t, ctx, "bars", chromedp.Evaluate[int](`document.querySelectorAll('#stats-chart rect').length`))
	if days != 3 { // Oct 5: answered and missed bars, Oct 6: answered (ivanov's own calls)
		t.Fatalf("%d bars in the week's chart", days)
	}
	screenshot(t, ctx, "statistics-week")
}
