package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"callgate/crm/crmtest"
	"callgate/internal/testenv"
	"callgate/sip/siptest"

	"github.com/chromedp/chromedp"
)

// axeSource is axe-core as `make axe` fetched it from npm.
func axeSource(t *testing.T) string {
	t.Helper()
	found, _ := filepath.Glob(filepath.Join("..", "build", "axe-core-*", "axe.min.js"))
	if len(found) == 0 {
		if testenv.InCI() {
			t.Fatal("axe-core is missing: make test fetches it (make axe)")
		}
		testenv.Unavailable(t, "axe-core is missing: run make axe")
	}
	b, err := os.ReadFile(found[len(found)-1])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// audit runs axe-core on the page as it is now and reports its critical
// and serious violations with the elements they concern; at a phone's
// width it also checks that the page does not scroll sideways. A
// screenshot of each state is kept for review.
func audit(t *testing.T, b context.Context, axe, page, lang string, width int64) {
	t.Helper()
	browse(t, b, fmt.Sprintf("%s at %d px", page, width), chromedp.EmulateViewport(width, 900), chromedp.Sleep(200*time.Millisecond))
	if !value(t, b, "axe-core present", chromedp.Evaluate[bool](`!!window.axe`)) {
		browse(t, b, "inject axe-core", chromedp.Evaluate[chromedp.Void](axe))
	}
	found := value(t, b, "axe-core on "+page, chromedp.Evaluate[[]string](`axe.run(document, { resultTypes: ['violations'] }).then(r =>
		r.violations.filter(v => v.impact === 'critical' || v.impact === 'serious')
			.map(v => v.impact + ' ' + v.id + ': ' + v.help + ' — ' + v.nodes.map(n => n.target.join(' ')).join(', ')))`, chromedp.EvalAwaitPromise))
	for _, v := range found {
		t.Errorf("%s, %s, %d px: %s", page, lang, width, v)
	}
	if width < 500 {
		if w := value(t, b, page+" width", chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > int(width) {
			wide := value(t, b, "what is wide", chromedp.Evaluate[[]string](`[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > innerWidth + 1 && e.getClientRects().length)
				.slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))`))
			t.Errorf("%s, %s, %d px: the page is %d px wide; past the edge: %q", page, lang, width, w, wide)
		}
	}
	screenshot(t, b, fmt.Sprintf("a11y-%s-%s-%d", page, lang, width))
}

// The console is accessible and fits a phone on every page, in both
// languages: axe-core (the engine of the browsers' own audits) finds no
// critical or serious violation at 1400 and 390 px, in Russian and
// English, on the login page, on every page an admin sees (calls, missed,
// statistics, desks, admin) and on an employee's calls page, and no page
// scrolls sideways at 390 px.
func TestConsoleAccessibility(t *testing.T) {
	axe := axeSource(t)
	st := crmtest.NewRetailCRM(retailKey)
	t.Cleanup(st.Close)
	st.AddOrder(st.AddCustomer("Анна", "Смирнова", "79161234567"), "1042A", "shop")
	o := consoleOffice(t, st, officeOpts{IvanovExtra: "role = \"admin\"\n", Extra: `[[desk]]
extension = "110"
name = "Ресепшн"
sip_password = "Desk110pass"
`})
	// An answered call and a missed one, so the lists have rows.
	ctx := withTimeout(t, 60*time.Second)
	go func() {
		if c, err := o.vpbx.Invite(ctx, "sales1", "79161234567", siptest.SDP("127.0.0.1:30970")); err == nil {
			time.Sleep(300 * time.Millisecond)
			_ = c.Hangup(ctx)
		}
	}()
	in, other := nextCall(t, o.phones["101"]), nextCall(t, o.phones["102"])
	if _, err := in.Answer(ctx, siptest.SDP("127.0.0.1:30971")); err != nil {
		t.Fatal(err)
	}
	<-other.Gone()
	o.lastCall()
	go func() { _, _ = o.vpbx.Invite(ctx, "sales1", "79160000002", siptest.SDP("127.0.0.1:30972")) }()
	for _, c := range []*siptest.IncomingCall{nextCall(t, o.phones["101"]), nextCall(t, o.phones["102"])} {
		_ = c.Reject(486, "Busy Here")
	}

	b := browser(t)
	base := o.d.url("")
	for _, lang := range []string{"ru", "en"} {
		browse(t, b, "the login page in "+lang, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("login-form")),
			chromedp.Evaluate[chromedp.Void](`localStorage.setItem('lang', '`+lang+`')`), chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("login-form")))
		for _, w := range []int64{1400, 390} {
			audit(t, b, axe, "login", lang, w)
		}
		login(t, b, base, "ivanov")
		for _, page := range []string{"calls", "missed", "stats", "desks", "admin"} {
			browse(t, b, "open "+page, chromedp.EmulateViewport(1400, 900), chromedp.Evaluate[chromedp.Void](`location.hash = '#/`+page+`'`),
				chromedp.WaitVisible(chromedp.ID(page)), chromedp.Sleep(300*time.Millisecond))
			for _, w := range []int64{1400, 390} {
				audit(t, b, axe, page, lang, w)
			}
		}
		browse(t, b, "log out", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-form")))
		login(t, b, base, "petrov")
		for _, w := range []int64{1400, 390} {
			audit(t, b, axe, "calls-employee", lang, w)
		}
		browse(t, b, "log out", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-form")))
	}
}
