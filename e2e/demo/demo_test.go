package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"callgate/internal/testenv"
)

// The test runs the real binary, built once for the package.
var binPath string

func TestMain(m *testing.M) {
	bin, remove, err := testenv.BuildCallgate(raceEnabled)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = bin
	code := m.Run()
	remove()
	os.Exit(code)
}

// line is one line of the demo's output and when the test read it.
type line struct {
	at   time.Duration // since "callgate is up"
	text string
}

// output collects the demo's lines as they come.
type output struct {
	mu    sync.Mutex
	start time.Time // when "callgate is up" came
	lines []line
	api   string // the console's address, once told
	token string
}

var (
	consoleRe = regexp.MustCompile(`console: http://([0-9.:]+)/`)
	tokenRe   = regexp.MustCompile(`Authorization: Bearer ([^']+)'`)
)

func (o *output) read(sc *bufio.Scanner) {
	for sc.Scan() {
		now, text := time.Now(), sc.Text()
		o.mu.Lock()
		if o.start.IsZero() && strings.Contains(text, "callgate is up") {
			o.start = now
		}
		if m := consoleRe.FindStringSubmatch(text); m != nil && o.api == "" {
			o.api = m[1]
		}
		if m := tokenRe.FindStringSubmatch(text); m != nil && o.token == "" {
			o.token = m[1]
		}
		at := time.Duration(0)
		if !o.start.IsZero() {
			at = now.Sub(o.start)
		}
		o.lines = append(o.lines, line{at, text})
		o.mu.Unlock()
	}
}

func (o *output) snapshot() (start time.Time, api, token string, lines []line) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.start, o.api, o.token, append([]line(nil), o.lines...)
}

func (o *output) String() string {
	_, _, _, lines := o.snapshot()
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "%6.1fs %s\n", l.at.Seconds(), l.text)
	}
	return b.String()
}

// record is what the test reads of callgate's call history.
type record struct {
	Direction string    `json:"direction"`
	Origin    string    `json:"origin"`
	Internal  bool      `json:"internal"`
	Started   time.Time `json:"started"`
	Answered  time.Time `json:"answered"`
}

// answeredSince asks callgate's API for the calls started after from and
// reports whether an inbound call and a click-to-call among them were
// answered.
func answeredSince(api, token string, from time.Time) (inbound, clickToCall bool, err error) {
	req, err := http.NewRequest("GET", "http://"+api+"/api/v1/calls?limit=500&from="+url.QueryEscape(from.UTC().Format(time.RFC3339)), nil)
	if err != nil {
		return false, false, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		return false, false, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return false, false, fmt.Errorf("GET /api/v1/calls: %s", res.Status)
	}
	var list struct{ Calls []record }
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		return false, false, err
	}
	for _, c := range list.Calls {
		if c.Internal || c.Answered.IsZero() || c.Started.Before(from) {
			continue
		}
		switch {
		case c.Origin == "click-to-call":
			clickToCall = true
		case c.Direction == "inbound":
			inbound = true
		}
	}
	return inbound, clickToCall, nil
}

// Timing of the run: the phones ask for 120 s and callgate's accounts get
// 60 s from the VPBX stand-in, so by `late` every first registration has
// run out and only refreshed ones carry calls.
const (
	runFor = 200 * time.Second
	late   = 150 * time.Second
	// Registration intervals: a registration must be renewed within them.
	phoneGrant = 120 * time.Second
	trunkGrant = 60 * time.Second
)

// `callgate demo -duration 200s` keeps the simulated office working for
// its whole run: the phones and callgate's VPBX accounts refresh their
// registrations before they expire, inbound calls are answered and
// click-to-calls connect after 150 s (in the output and in callgate's own
// history), every kind of call happens, and the summary counts each call
// as the running output told it, failures as failures.
func TestDemoKeepsWorkingPastRegistrationExpiry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), runFor+60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, "demo", "-duration", runFor.String(), "-http", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errs strings.Builder
	cmd.Stderr = &errs
	began := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := &output{}
	read := make(chan struct{})
	go func() { defer close(read); out.read(bufio.NewScanner(stdout)) }()
	exited := make(chan error, 1)
	go func() { <-read; exited <- cmd.Wait() }()

	// While it runs: from 155 s on, callgate's history must show an
	// answered inbound call and an answered click-to-call started after
	// 150 s. Asked every 5 s until both are there or the demo ends.
	var inboundLate, c2cLate bool
	var apiErr error
	poll := time.NewTicker(5 * time.Second)
	defer poll.Stop()
	var waitErr error
wait:
	for {
		select {
		case waitErr = <-exited:
			break wait
		case <-poll.C:
			start, api, token, _ := out.snapshot()
			if start.IsZero() || api == "" || token == "" || time.Since(start) < late+5*time.Second || (inboundLate && c2cLate) {
				continue
			}
			in, c2c, err := answeredSince(api, token, start.Add(late))
			inboundLate, c2cLate, apiErr = inboundLate || in, c2cLate || c2c, err
		}
	}
	ran := time.Since(began)
	if waitErr != nil {
		t.Fatalf("demo: %v\n%s\nstderr:\n%s", waitErr, out, tail(errs.String(), 40))
	}
	if ran < runFor || ran > runFor+40*time.Second {
		t.Errorf("demo ran %s with -duration %s", ran, runFor)
	}
	if strings.Contains(errs.String(), "WARNING: DATA RACE") {
		t.Errorf("data race in the demo:\n%s", errs.String())
	}
	if !inboundLate || !c2cLate {
		t.Errorf("callgate's history after %s: answered inbound %v, answered click-to-call %v (last API error: %v)", late, inboundLate, c2cLate, apiErr)
	}
	_, _, _, lines := out.snapshot()
	checkRefreshes(t, lines)
	checkLateCalls(t, lines)
	checkSummary(t, lines)
	if t.Failed() {
		t.Logf("demo output:\n%s", out)
	}
}

// checkRefreshes: every phone and every VPBX account was registered again
// before its registration ran out, up to the end of the run.
func checkRefreshes(t *testing.T, lines []line) {
	t.Helper()
	phoneRe := regexp.MustCompile(`^\S+  phone (\d+)(?: at \S+: REGISTER -> |: registration refreshed: )200 `)
	trunkRe := regexp.MustCompile(`^\S+  VPBX: account (\S+) registered by callgate`)
	end := lines[len(lines)-1].at
	for _, c := range []struct {
		what  string
		re    *regexp.Regexp
		names []string
		grant time.Duration
	}{
		{"phone", phoneRe, []string{"101", "102", "103"}, phoneGrant},
		{"VPBX account", trunkRe, []string{"sales1", "sales2"}, trunkGrant},
	} {
		times := map[string][]time.Duration{}
		for _, l := range lines {
			if m := c.re.FindStringSubmatch(l.text); m != nil {
				times[m[1]] = append(times[m[1]], l.at)
			}
		}
		for _, name := range c.names {
			at := times[name]
			if len(at) < 3 {
				t.Errorf("%s %s registered %d times in %s (granted %s each): %v", c.what, name, len(at), end, c.grant, at)
				continue
			}
			for i := 1; i < len(at); i++ {
				if gap := at[i] - at[i-1]; gap > c.grant {
					t.Errorf("%s %s: %s between registrations at %s and %s, more than the %s granted", c.what, name, gap, at[i-1], at[i], c.grant)
				}
			}
			if last := at[len(at)-1]; end-last > c.grant {
				t.Errorf("%s %s: last registered at %s, expired before the end at %s", c.what, name, last, end)
			}
		}
	}
}

// checkLateCalls: after 150 s the output still tells answered inbound calls
// and connected click-to-calls.
func checkLateCalls(t *testing.T, lines []line) {
	t.Helper()
	for _, kind := range []string{"inbound", "click-to-call"} {
		found := false
		for _, l := range lines {
			if l.at > late && strings.Contains(l.text, "  OK "+kind+": ") {
				found = true
			}
		}
		if !found {
			t.Errorf("no %q line after %s", "OK "+kind, late)
		}
	}
}

var summaryRe = regexp.MustCompile(`summary: calls: (\d+) inbound answered, (\d+) outbound, (\d+) missed, (\d+) transferred, (\d+) click-to-call, (\d+) failed[^;]*; ` +
	`callgate's history has (\d+) calls, (\d+) answered, \d+ still in progress; (\d+) recordings on disk \(\d+ KiB\); RetailCRM got (\d+) popups and (\d+) history entries; Megaplan got (\d+) calls`)

// checkSummary: the summary counts each call the way the running output
// told it (OK per kind, FAILED as failed), every kind of call happened,
// and the CRMs and recordings got theirs.
func checkSummary(t *testing.T, lines []line) {
	t.Helper()
	var m []string
	told := map[string]int{}
	for _, l := range lines {
		if s := summaryRe.FindStringSubmatch(l.text); s != nil {
			m = s
		}
		for _, kind := range []string{"inbound", "outbound", "missed", "transfer", "click-to-call"} {
			if strings.Contains(l.text, "  OK "+kind+": ") {
				told[kind]++
			}
		}
		if strings.Contains(l.text, "  FAILED ") {
			told["failed"]++
			t.Errorf("a demo call failed: %s", l.text)
		}
	}
	if m == nil {
		t.Fatal("no summary in the output")
	}
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	for i, kind := range []string{"inbound", "outbound", "missed", "transfer", "click-to-call", "failed"} {
		if n(i+1) != told[kind] {
			t.Errorf("summary counts %d %s, the output told %d", n(i+1), kind, told[kind])
		}
		if kind != "failed" && n(i+1) < 3 {
			t.Errorf("only %d %s calls went as scripted in %s", n(i+1), kind, runFor)
		}
	}
	if n(7) < 10 || n(8) < 5 {
		t.Errorf("callgate's history has %d calls, %d answered", n(7), n(8))
	}
	for i, what := range []string{"recordings", "RetailCRM popups", "RetailCRM history entries", "Megaplan calls"} {
		if n(i+9) < 1 {
			t.Errorf("%s: %d in the summary", what, n(i+9))
		}
	}
}

func tail(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
