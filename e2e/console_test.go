package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"callgate/crm/crmtest"
	"callgate/sip/siptest"

	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"
)

// consolePassword is every test employee's console password.
const consolePassword = "console-pass-123"

func passwordHash(t *testing.T) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(consolePassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// consoleOffice is an office where ivanov and petrov log in to the console
// (employees; visibility "own"), with RetailCRM (ivanov is user 7) when st
// is not nil; more adds keys to the employees' tables and TOML at the end.
func consoleOffice(t *testing.T, st *crmtest.RetailCRM, more officeOpts) *office {
	t.Helper()
	hash := "password_hash = \"" + passwordHash(t) + "\"\n"
	opts := officeOpts{HTTPExtra: `public_url = "http://127.0.0.1:HTTPPORT"`,
		IvanovExtra: more.IvanovExtra + hash, PetrovExtra: more.PetrovExtra + hash, Extra: more.Extra}
	if st != nil {
		opts.IvanovExtra += "retailcrm_user = 7\n"
		opts.Extra += `[crm.retailcrm]
enabled = true
url = "` + st.URL + `"
api_key = "` + retailKey + `"
site = "shop"
`
	}
	return newOffice(t, opts)
}

// apiLogin logs in to the console API as a browser would and returns a
// client carrying the session cookie.
func apiLogin(t *testing.T, base, login string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	res, err := client.Post(base+"/api/v1/session", "application/json", strings.NewReader(`{"login":"`+login+`","password":"`+consolePassword+`"}`))
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("log in as %s: %v %v", login, err, res)
	}
	res.Body.Close()
	return client
}

// browser starts headless Chromium (Debian's chromium package) for the test.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := needTool(t, "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"), chromedp.WindowSize(1280, 800))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// screenshot writes the page to build/screenshots for a reviewer.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := filepath.Join("..", "build", "screenshots")
	_ = os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func browse(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(c, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// value runs one action that returns a value.
func value[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

func login(t *testing.T, ctx context.Context, base, user string) {
	t.Helper()
	browse(t, ctx, "log in as "+user,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("login-user"), user),
		chromedp.SendKeys(chromedp.ID("login-password"), consolePassword),
		chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("calls")))
}

// The console in real Chromium: log in; a ringing call shows a popup card
// with the client's name from the CRM within a second; after hang-up the
// history shows the call and its recording plays; another employee does
// not see it; the language switch turns the labels English.
func TestConsoleInChromium(t *testing.T) {
	st := crmtest.NewRetailCRM(retailKey)
	t.Cleanup(st.Close)
	st.AddOrder(st.AddCustomer("Анна", "Смирнова", "79161234567"), "1042A", "shop")
	o := consoleOffice(t, st, officeOpts{})
	ctx := browser(t)
	base := o.d.url("")

	browse(t, ctx, "open the login page", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("login-form")))
	screenshot(t, ctx, "login")
	// Everything the first load transferred: the page, its assets and the
	// session probe (the console fetches nothing from elsewhere).
	loaded := value(t, ctx, "first load size", chromedp.Evaluate[[]float64](
		`[...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')].map(e => e.transferSize)`))
	total := 0.0
	for _, n := range loaded {
		total += n
	}
	t.Logf("console first load: %d requests, %.1f KB transferred", len(loaded), total/1024)
	if total <= 0 || total > 300*1024 {
		t.Fatalf("console first load transferred %.0f bytes, want 0 < n < 300 KB", total)
	}
	browse(t, ctx, "wrong password",
		chromedp.SendKeys(chromedp.ID("login-user"), "ivanov"), chromedp.SendKeys(chromedp.ID("login-password"), "wrong-password"),
		chromedp.Click(chromedp.ID("login-submit")), chromedp.WaitVisible(chromedp.ID("login-error")))
	bad := value(t, ctx, "the error", chromedp.Text(chromedp.ID("login-error")))
	if !strings.Contains(bad, "Неверный") {
		t.Fatalf("wrong password says %q", bad)
	}
	browse(t, ctx, "clear", chromedp.Evaluate[chromedp.Void](`document.getElementById('login-form').reset()`))
	login(t, ctx, base, "ivanov")

	// A call rings: the card names the client within a second.
	callCtx := withTimeout(t, 30*time.Second)
	done := make(chan *siptest.Call, 1)
	start := time.Now()
	go func() {
		c, _ := o.vpbx.Invite(callCtx, "sales1", "79161234567", siptest.SDP("127.0.0.1:30960"))
		done <- c
	}()
	var name string
	for time.Since(start) < time.Second {
		name, _ = chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector('.popup .name')||{}).textContent||''`))
		if name == "Анна Смирнова" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if name != "Анна Смирнова" {
		t.Fatalf("popup card after %s shows %q", time.Since(start), name)
	}
	card := value(t, ctx, "the card's facts", chromedp.Evaluate[[]string](
		`[document.querySelector('.popup dl').innerText, document.querySelector('.popup .deals a').href, document.querySelector('.popup .crm-link').href]`))
	if !strings.Contains(card[0], "shop") || !strings.Contains(card[0], "№ 1042A") || !strings.HasSuffix(card[1], "/orders/100/edit") || !strings.Contains(card[2], "/customers/1") {
		t.Fatalf("popup card facts %q", card)
	}
	screenshot(t, ctx, "popup")

	// Talk for a while, hang up: the call is in the history with a recording.
	outside, ivanov := tonePeers(t)
	in, other := nextCall(t, o.phones["101"]), nextCall(t, o.phones["102"])
	phoneSide, err := in.Answer(callCtx, siptest.SDP(ivanov.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	<-other.Gone()
	vpbxSide := <-done
	toA, _ := siptest.MediaAddr(vpbxSide.Remote)
	toB, _ := siptest.MediaAddr(in.Request.Body())
	outside.SendTo(toA)
	ivanov.SendTo(toB)
	_ = phoneSide
	time.Sleep(1500 * time.Millisecond)
	_ = vpbxSide.Hangup(callCtx)
	rec := o.lastCall()
	browse(t, ctx, "the call in the history", chromedp.WaitVisible(chromedp.CSS(`tr[data-call="`+rec.ID+`"] audio`)))
	value(t, ctx, "the popup gone", chromedp.Poll[bool](`document.querySelector('.popup') === null`))
	duration := value(t, ctx, "the recording's duration in the audio element",
		chromedp.Poll[float64](`(() => { const a = document.querySelector('tr[data-call="`+rec.ID+`"] audio'); return a && a.readyState >= 1 && a.duration > 0 ? a.duration : 0 })()`))
	if duration < 1 || duration > 3 {
		t.Fatalf("recording duration in the browser %.2f s, talk was 1.5 s", duration)
	}
	screenshot(t, ctx, "history")

	// English.
	browse(t, ctx, "switch to English", chromedp.Click(chromedp.ID("lang")))
	nav := value(t, ctx, "the nav label", chromedp.Text(chromedp.ID("nav-calls")))
	who := value(t, ctx, "the role label", chromedp.Text(chromedp.ID("who")))
	if nav != "Calls" || !strings.HasSuffix(who, "employee") {
		t.Fatalf("nav says %q, the header %q in English", nav, who)
	}
	screenshot(t, ctx, "history-en")

	// petrov (visibility "own") sees none of ivanov's calls, in the browser
	// and on the API.
	browse(t, ctx, "log out", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("login-form")))
	login(t, ctx, base, "petrov")
	browse(t, ctx, "petrov's history", chromedp.Sleep(300*time.Millisecond))
	rows := value(t, ctx, "petrov's rows", chromedp.Evaluate[int](`document.querySelectorAll('#calls-body tr').length`))
	if rows != 0 {
		t.Fatalf("petrov sees %d calls", rows)
	}
	client := apiLogin(t, base, "103")
	if res, _ := client.Get(base + "/api/v1/calls/" + rec.ID); res.StatusCode != 404 {
		t.Fatalf("petrov reads ivanov's call: %d", res.StatusCode)
	}
}

// State-changing requests with a console session need the session's CSRF
// token; a login is rate limited like a token.
func TestConsoleSessionAndCSRF(t *testing.T) {
	st := crmtest.NewRetailCRM(retailKey)
	t.Cleanup(st.Close)
	o := consoleOffice(t, st, officeOpts{})
	base := o.d.url("")
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	if res, _ := client.Get(base + "/api/v1/calls"); res.StatusCode != 401 {
		t.Fatalf("no session: %d", res.StatusCode)
	}
	res, err := client.Post(base+"/api/v1/session", "application/json", strings.NewReader(`{"login":"ivanov","password":"`+consolePassword+`"}`))
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("login: %v %v", err, res)
	}
	var s struct{ CSRF, Role string }
	_ = decodeJSON(res, &s)
	res.Body.Close()
	var cookie *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "callgate_session" {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || s.CSRF == "" || s.Role != "employee" {
		t.Fatalf("session cookie %+v, session %+v", cookie, s)
	}
	if res, _ := client.Get(base + "/api/v1/calls"); res.StatusCode != 200 {
		t.Fatalf("with a session: %d", res.StatusCode)
	}
	req, _ := http.NewRequest("POST", base+"/api/v1/calls", strings.NewReader(`{"employee":"ivanov","number":"89161234567"}`))
	req.Header.Set("Content-Type", "application/json")
	res, _ = client.Do(req)
	var e struct{ Error struct{ Code string } }
	_ = decodeJSON(res, &e)
	if res.StatusCode != 403 || e.Error.Code != "csrf" {
		t.Fatalf("click-to-call without the CSRF token: %d %+v", res.StatusCode, e)
	}
	select {
	case c := <-o.phones["101"].Calls:
		t.Fatalf("a refused request rang the phone: %s", c.From())
	case <-time.After(200 * time.Millisecond):
	}
	req, _ = http.NewRequest("DELETE", base+"/api/v1/session", nil)
	if res, _ := client.Do(req); res.StatusCode != 403 {
		t.Fatalf("logout without the CSRF token: %d", res.StatusCode)
	}
	req.Header.Set("X-CSRF-Token", s.CSRF)
	if res, _ := client.Do(req); res.StatusCode != 204 {
		t.Fatalf("logout: %d", res.StatusCode)
	}
	if res, _ := client.Get(base + "/api/v1/calls"); res.StatusCode != 401 {
		t.Fatalf("after logout: %d", res.StatusCode)
	}
	for range 10 {
		res, _ := http.Post(base+"/api/v1/session", "application/json", strings.NewReader(`{"login":"ivanov","password":"guess"}`))
		res.Body.Close()
	}
	if res, _ := http.Post(base+"/api/v1/session", "application/json", strings.NewReader(`{"login":"ivanov","password":"`+consolePassword+`"}`)); res.StatusCode != 429 {
		t.Fatalf("11th login after 10 wrong passwords: %d, want 429", res.StatusCode)
	}
	if strings.Contains(o.d.log.String(), consolePassword) {
		t.Fatal("a console password reached the log")
	}
}

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

func moscow(t *testing.T) *time.Location {
	loc, err := time.LoadLocation("Europe/Moscow")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}
