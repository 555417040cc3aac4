package e2e

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"callgate/crm/crmtest"
	"callgate/gateway/calls"
	"callgate/gateway/store"
	"callgate/sip/siptest"

	"github.com/chromedp/chromedp"
)

// Missed calls and statistics in Chromium: a call nobody answers shows up
// with its reason and a badge; calling the client back clears it; the
// statistics for the day count both calls, draw them and export CSV.
func TestConsoleMissedCallsAndStatistics(t *testing.T) {
	st := crmtest.NewRetailCRM(retailKey)
	t.Cleanup(st.Close)
	o := consoleOffice(t, st, officeOpts{})
	ctx := browser(t)
	base := o.d.url("")
	login(t, ctx, base, "101")
	callCtx := withTimeout(t, 40*time.Second)

	// Nobody answers within the 3 s ring timeout.
	missed := make(chan error, 1)
	go func() {
		_, err := o.vpbx.Invite(callCtx, "sales1", "79167654321", siptest.SDP("127.0.0.1:30962"))
		missed <- err
	}()
	<-nextCall(t, o.phones["101"]).Gone()
	if err := <-missed; err == nil {
		t.Fatal("the unanswered call was answered")
	}
	browse(t, ctx, "the missed call with its reason",
		chromedp.Evaluate[chromedp.Void](`location.hash = '#/missed'`),
		chromedp.WaitVisible(chromedp.CSS(`#missed-body tr td.reason`)),
		chromedp.WaitVisible(chromedp.ID("missed-badge")))
	reason := value(t, ctx, "reason", chromedp.Text(chromedp.CSS(`#missed-body tr td.reason`)))
	badge := value(t, ctx, "badge", chromedp.Text(chromedp.ID("missed-badge")))
	if reason != "Нет ответа" || badge != "1" {
		t.Fatalf("missed call reason %q, badge %q", reason, badge)
	}
	screenshot(t, ctx, "missed")

	// ivanov calls the client back and they talk: the missed call is handled.
	go func() {
		vc := <-o.vpbx.Calls
		if c, err := vc.Answer(callCtx, siptest.SDP("127.0.0.1:30963")); err == nil {
			time.Sleep(1200 * time.Millisecond)
			_ = c.Hangup(callCtx)
		}
	}()
	if _, err := o.phones["101"].Dial(callCtx, "89167654321", siptest.SDP("127.0.0.1:30964")); err != nil {
		t.Fatal(err)
	}
	value(t, ctx, "the missed call gone after the call-back",
		chromedp.Poll[bool](`document.querySelectorAll('#missed-body tr').length === 0 && getComputedStyle(document.getElementById('missed-badge')).display === 'none'`))

	// Today's statistics: one inbound missed, one outbound answered.
	today := time.Now().In(moscow(t)).Format("2006-01-02")
	browse(t, ctx, "statistics",
		chromedp.Evaluate[chromedp.Void](`location.hash = '#/stats'`),
		chromedp.WaitVisible(chromedp.CSS(`#stats-body tr[data-employee="ivanov"]`)))
	cells := value(t, ctx, "ivanov's figures", chromedp.Evaluate[[]string](
		`[...document.querySelectorAll('#stats-body tr[data-employee="ivanov"] td')].map(td => td.textContent)`))
	if len(cells) != 8 || cells[0] != "Иванов Иван" || cells[1] != "1" || cells[2] != "1" || cells[3] != "0" || cells[4] != "1" || cells[5] < "0:01" {
		t.Fatalf("ivanov's statistics row %q", cells)
	}
	bars := value(t, ctx, "the chart's bars for today", chromedp.Evaluate[[]string](
		`[...document.querySelectorAll('#stats-chart rect[data-date="`+today+`"]')].map(r => r.getAttribute('class'))`))
	if strings.Join(bars, ",") != "answered,missed" {
		t.Fatalf("today's bars %q", bars)
	}
	screenshot(t, ctx, "statistics")
	href := value(t, ctx, "CSV link", chromedp.Evaluate[string](`document.getElementById('stats-csv').href`))
	client := apiLogin(t, base, "ivanov")
	res, err := client.Get(href)
	if err != nil || res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("CSV: %v %v", err, res)
	}
	var body strings.Builder
	_, _ = io.Copy(&body, res.Body)
	res.Body.Close()
	if !strings.Contains(body.String(), "ivanov,Иванов Иван,1,1,0,1,") {
		t.Fatalf("CSV:\n%s", body.String())
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
	// The chart reads on its own: a legend, an axis of call counts up to
	// the busiest day (3 calls on Oct 5), the days in the console's
	// language, a name that sums the week up.
	read := func(what string) []string {
		return value(t, ctx, what, chromedp.Evaluate[[]string](`[
			[...document.querySelectorAll('#stats-legend li')].map(li => li.textContent).join('|'),
			[...document.querySelectorAll('#stats-chart text.axis')].map(x => x.textContent).join('|'),
			[...document.querySelectorAll('#stats-chart text.day')].map(x => x.textContent).join('|'),
			document.getElementById('stats-chart').getAttribute('aria-label')]`))
	}
	got := read("the chart in Russian")
	if !strings.HasPrefix(got[0], "отвечено|пропущено|прочие") || got[1] != "0|1|2|3" ||
		got[2] != "5 окт.|6 окт.|7 окт.|8 окт.|9 окт.|10 окт.|11 окт." || got[3] != "Звонки по дням: всего 4, отвечено 3, пропущено 1" {
		t.Fatalf("the chart in Russian: legend %q, axis %q, days %q, name %q", got[0], got[1], got[2], got[3])
	}
	screenshot(t, ctx, "statistics-week")
	browse(t, ctx, "switch to English", chromedp.Click(chromedp.ID("lang")),
		chromedp.WaitVisible(chromedp.CSS(`#stats-body tr[data-employee="ivanov"]`)))
	got = value(t, ctx, "the chart in English", chromedp.Poll[[]string](`(() => {
		const days = [...document.querySelectorAll('#stats-chart text.day')].map(x => x.textContent);
		return days[0] === '5 Oct' ? [[...document.querySelectorAll('#stats-legend li')].map(li => li.textContent).join('|'), days.join('|'),
			document.getElementById('stats-chart').getAttribute('aria-label')] : null })()`, chromedp.WithPollingTimeout(5*time.Second)))
	if !strings.HasPrefix(got[0], "answered|missed|other") || got[1] != "5 Oct|6 Oct|7 Oct|8 Oct|9 Oct|10 Oct|11 Oct" || got[2] != "Calls per day: total 4, answered 3, missed 1" {
		t.Fatalf("the chart in English: legend %q, days %q, name %q", got[0], got[1], got[2])
	}
	screenshot(t, ctx, "statistics-week-en")
}

func moscow(t *testing.T) *time.Location {
	loc, err := time.LoadLocation("Europe/Moscow")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}
