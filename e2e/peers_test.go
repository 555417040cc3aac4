package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"callgate/crm/crmtest"
	"callgate/media/rtptest"
	"callgate/sip/siptest"

	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"
)

const retailKey = "retail-e2e-key-0123456789"

// retailOffice is an office whose ivanov is RetailCRM user 7, with the
// connector pointed at a stand-in. trunks is TOML before the connector's
// table (more accounts), more goes after its keys (more keys or tables).
func retailOffice(t *testing.T, st *crmtest.RetailCRM, trunks, more string) *office {
	t.Helper()
	return crmOffice(t, st, nil, trunks, more)
}

const (
	megaplanUser     = "api@office"
	megaplanPassword = "megaplan-e2e-pass"
)

// crmStandIns starts both CRM stand-ins (Megaplan allowing 50 requests a
// second), closed after the test's daemon stops.
func crmStandIns(t *testing.T) (*crmtest.RetailCRM, *crmtest.Megaplan) {
	st := crmtest.NewRetailCRM(retailKey)
	t.Cleanup(st.Close)
	mp := crmtest.NewMegaplan(megaplanUser, megaplanPassword, 50)
	t.Cleanup(mp.Close)
	return st, mp
}

// crmRetryMax keeps the tests' waits short: a CRM that comes back is tried
// again within two seconds.
const crmRetryMax = "2s"

// crmOffice is retailOffice with Megaplan enabled too when mp is not nil:
// ivanov is Employee 1000007 there and petrov 1000009.
func crmOffice(t *testing.T, st *crmtest.RetailCRM, mp *crmtest.Megaplan, trunks, more string) *office {
	t.Helper()
	return newOffice(t, crmOfficeOpts(st, mp, trunks, more))
}

// crmOfficeOpts are crmOffice's options, for a test to vary further.
func crmOfficeOpts(st *crmtest.RetailCRM, mp *crmtest.Megaplan, trunks, more string) officeOpts {
	opts := officeOpts{HTTPExtra: `public_url = "http://127.0.0.1:HTTPPORT"`}
	if st != nil {
		opts.IvanovExtra = "retailcrm_user = 7\n"
		opts.Extra = trunks + fmt.Sprintf(`[crm.retailcrm]
enabled = true
url = %q
api_key = %q
site = "shop"
retry_max = %q
`, st.URL, retailKey, crmRetryMax) + more
	} else {
		opts.Extra = trunks + more
	}
	if mp != nil {
		opts.IvanovExtra += "megaplan_user = 1000007\n"
		opts.PetrovExtra = "megaplan_user = 1000009\n"
		opts.Extra += fmt.Sprintf(`[crm.megaplan]
enabled = true
url = %q
username = %q
password = %q
rps = 50
poll = "1s"
retry_max = %q
`, mp.URL, megaplanUser, megaplanPassword, crmRetryMax)
	}
	return opts
}

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
		IvanovExtra: more.IvanovExtra + hash, PetrovExtra: more.PetrovExtra + hash, Extra: more.Extra, ShutdownGrace: more.ShutdownGrace, MediaTimeout: more.MediaTimeout, Format: more.Format,
		NoNetlink: more.NoNetlink}
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

// recordingDuration is a poll expression for the length the console's
// player reads from a call's first recording, loading it as pressing
// play does (the history does not preload recordings); 0 until known.
func recordingDuration(callID string) string {
	return `(() => {
		const a = document.querySelector('tr[data-call="` + callID + `"] audio');
		if (!a) return 0;
		if (a.preload === 'none') { a.preload = 'metadata'; a.load(); }
		return a.readyState >= 1 && isFinite(a.duration) && a.duration > 0 ? a.duration : 0;
	})()`
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

// Linphone (Debian's linphonec: belle-sip and liblinphone, the stack of
// many softphones) is ivanov's phone on line 101 in these tests. Each runs
// in its own loopback-only network namespace: Linphone offers every
// address the machine has, and media must never leave loopback.

// linphoneOffice is an office whose ivanov (lines 101 and 102) has only
// Linphone, registered as 101 and sending a 1000 Hz tone; petrov's 103 is
// a siptest phone.
func linphoneOffice(t *testing.T, lc siptest.LinphoneConfig) (*office, *siptest.Linphone) {
	t.Helper()
	lc.Binary = needTool(t, "linphonec")
	lc.Script = needTool(t, "script")
	sox := needTool(t, "sox")
	o := newOffice(t, officeOpts{Without: []string{"101", "102"}})
	lc.Dir = t.TempDir()
	lc.Play = filepath.Join(lc.Dir, "tone1000.wav")
	if out, err := exec.Command(sox, "-n", "-r", "8000", "-c", "1", "-b", "16", lc.Play, "synth", "120", "sine", "1000", "vol", "0.5").CombinedOutput(); err != nil {
		t.Fatalf("sox: %v %s", err, out)
	}
	lc.User, lc.Password, lc.Registrar = "101", "Phone101pass", o.d.sipAddr()
	lc.SIPPort, lc.RTPPort = freePort(t), freePort(t)
	lp, err := siptest.StartLinphone(lc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		lp.Close()
		// CALLGATE_LINPHONE_LOGS=DIR keeps each test's liblinphone log.
		if dir := os.Getenv("CALLGATE_LINPHONE_LOGS"); dir != "" {
			b, _ := os.ReadFile(lp.Log)
			os.WriteFile(filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".log"), b, 0o644)
		}
		if t.Failed() {
			log, _ := os.ReadFile(lp.Log)
			t.Logf("linphonec:\n%s\nliblinphone log:\n%s", tail(lp.Output(), 4000), tail(sipOnly(string(log)), 30000))
		}
	})
	if err := lp.Registered(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	o.d.waitMetric("callgate_registered_contacts", 2, 5*time.Second)
	return o, lp
}

// sipOnly keeps the SIP messages of a liblinphone log and its warnings
// and errors, which is what a failure needs.
func sipOnly(log string) string {
	var b strings.Builder
	keep := false
	for _, line := range strings.Split(log, "\n") {
		switch {
		case strings.Contains(line, "message sent to") || strings.Contains(line, "new bytes from"):
			keep = true
		case strings.HasPrefix(line, "20") && keep:
			keep = false
		}
		if keep || strings.Contains(line, "-error-") || strings.Contains(line, "-warning-") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

var sipStartLine = regexp.MustCompile(`^(SIP/2\.0 \d{3} |[A-Z]+ \S+ SIP/2\.0$)`)

// linphoneGot is every SIP message Linphone received whose start line
// begins with start and whose CSeq names method.
func linphoneGot(t *testing.T, lp *siptest.Linphone, start, method string) []string {
	t.Helper()
	log, err := os.ReadFile(lp.Log)
	if err != nil {
		t.Fatal(err)
	}
	cseq := regexp.MustCompile(`(?m)^CSeq: \d+ ` + regexp.QuoteMeta(method) + `\s*$`)
	var got []string
	var msg []string
	in := false
	flush := func() {
		if len(msg) > 0 && strings.HasPrefix(msg[0], start) {
			m := strings.Join(msg, "\n")
			if cseq.MatchString(m) {
				got = append(got, m)
			}
		}
		msg = nil
	}
	for _, line := range strings.Split(string(log), "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.HasPrefix(line, "20"): // a log line ends the message before it
			flush()
			in = strings.Contains(line, "new bytes from")
			continue
		case in && sipStartLine.MatchString(line): // over TCP one read may hold several
			flush()
		}
		if in {
			msg = append(msg, line)
		}
	}
	flush()
	return got
}

// heardWAV is what Linphone wrote of the audio it received, as 8 kHz
// samples (it records at its own rate).
func heardWAV(t *testing.T, path string) []float64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 44 || string(b[:4]) != "RIFF" {
		t.Fatalf("linphone's recording %s: %v (%d bytes)", path, err, len(b))
	}
	rate := 8000
	for off := 12; off+8 <= len(b); {
		id, size := string(b[off:off+4]), int(binary.LittleEndian.Uint32(b[off+4:]))
		body := b[off+8:]
		switch id {
		case "fmt ":
			rate = int(binary.LittleEndian.Uint32(body[4:]))
		case "data":
			// liblinphone leaves the size unset until the file is closed.
			if size == 0 || size > len(body) {
				size = len(body)
			}
			var samples []float64
			step := max(rate/8000, 1)
			for i := 0; i+1 < size; i += 2 * step {
				samples = append(samples, float64(int16(binary.LittleEndian.Uint16(body[i:])))/32768)
			}
			return samples
		}
		off += 8 + size + size%2
	}
	t.Fatalf("linphone's recording %s has no data chunk", path)
	return nil
}

// linphoneHeard asserts that Linphone received freq during its last call.
// It looks at 100 ms windows: a phone's playout (jitter buffer, loss
// concealment) splices the tone with phase jumps, which a detector over
// seconds would read as a spread-out signal. Most windows between the
// first and last tenth must carry the tone.
func linphoneHeard(t *testing.T, lp *siptest.Linphone, freq float64) {
	t.Helper()
	s := heardWAV(t, lp.Heard)
	const window = 800
	var windows, with int
	for i := len(s) / 10; i+window <= len(s)-len(s)/10; i += window {
		windows++
		if rtptest.Has(s[i:i+window], freq) {
			with++
		}
	}
	if len(s) < 8000 || with*10 < windows*6 {
		t.Fatalf("linphone did not hear %g Hz: %d of %d windows of 100 ms carry it (%d samples, energy %.2g)",
			freq, with, windows, len(s), rtptest.Energy(s))
	}
}

// linphoneAnswers has the VPBX call sales1 with the outside party's RTP;
// Linphone answers by itself. It returns the VPBX's side once the outside
// party hears Linphone's tone.
func (o *office) linphoneAnswers(ctx context.Context, outside *rtptest.Peer) *siptest.Call {
	o.t.Helper()
	vpbxSide, err := o.vpbx.Invite(ctx, "sales1", "79161234567", siptest.SDP(outside.Addr().String()))
	if err != nil {
		o.t.Fatal(err)
	}
	toRelay, _ := siptest.MediaAddr(vpbxSide.Remote)
	outside.SendTo(toRelay)
	o.d.waitFor("the outside party hears linphone", 10*time.Second, func() bool { return hears(outside, 1000) })
	return vpbxSide
}

// reinvitesAtVPBX collects the directions of the re-INVITEs the VPBX got
// until want is seen.
func (o *office) reinvitesAtVPBX(want string, timeout time.Duration) []string {
	o.t.Helper()
	var got []string
	deadline := time.After(timeout)
	for {
		select {
		case r := <-o.vpbx.Requests:
			if r.Method != "INVITE" {
				continue
			}
			dir := "sendrecv"
			for _, d := range []string{"sendonly", "recvonly", "inactive"} {
				if strings.Contains(string(r.Body()), "a="+d) {
					dir = d
				}
			}
			got = append(got, dir)
			if dir == want {
				return got
			}
		case <-deadline:
			o.t.Fatalf("the VPBX got no re-INVITE %s; got %v", want, got)
		}
	}
}
