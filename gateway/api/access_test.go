package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"callgate/crm/outbox"
	"callgate/gateway/api/apitest"
	"callgate/gateway/calls"
	"callgate/gateway/recordings"
	"callgate/sip/b2bua"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	adminTok  = "admin-token-0123456789"
	ivanovTok = "ivanov-token-0123456789"
	petrovTok = "petrov-token-0123456789"
	crmTok    = "crm-token-0123456789"
)

// memCalls is an in-memory CallStore.
type memCalls struct {
	mu   sync.Mutex
	recs map[string]*calls.Record
}

func (m *memCalls) Get(id string) (*calls.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.recs[id]; ok {
		c := *r
		return &c, nil
	}
	return nil, calls.ErrNotFound
}

func (m *memCalls) List(f calls.Filter) ([]calls.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []calls.Record
	for _, r := range m.recs {
		if (f.Employee == "" || involves(r, f.Employee)) && (f.Number == "" || strings.Contains(r.Outside, strings.TrimPrefix(f.Number, "+"))) {
			out = append(out, *r)
		}
	}
	return out, nil
}

// fakeDialer accepts click-to-calls for ivanov and knows call c1 as live.
type fakeDialer struct{}

func (fakeDialer) ClickToCall(r ClickToCallRequest) (string, error) {
	if r.Employee != "ivanov" {
		return "", &DialError{Status: 404, Code: "unknown_employee", Message: "no employee with this id"}
	}
	if strings.HasPrefix(r.Number, "+882") {
		return "", &DialError{Status: 403, Code: "dial_rule", Rule: "international", Message: "the dial rules do not allow this number (international)"}
	}
	return "c3", nil
}

func (fakeDialer) Hangup(id string) bool { return id == "c1" }

func (fakeDialer) Transfer(id, to, mode string) (string, error) {
	if id != "c1" {
		return "", &DialError{Status: 404, Code: "call_not_found", Message: "no call in progress with this id"}
	}
	if strings.HasPrefix(to, "8 809") {
		return "", &DialError{Status: 403, Code: "dial_rule", Rule: "premium-rate", Message: "the dial rules do not allow this number (premium-rate)"}
	}
	if mode == "attended" {
		return "consulting", nil
	}
	return "transferred", nil
}

func (fakeDialer) FinishTransfer(id, how string) error {
	if id != "c1" {
		return &DialError{Status: 409, Code: "no_consultation", Message: "no attended transfer is in progress on this call"}
	}
	return nil
}

type fixture struct {
	srv   *httptest.Server
	s     *Server
	links *recordings.Links
	dir   string
	now   time.Time
	nowMu sync.Mutex
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), now: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
	wav := bytes.Repeat([]byte("RIFFWAVEdata"), 100)
	if err := os.MkdirAll(filepath.Join(f.dir, "2026/11/22"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"c1-1.wav", "c2-1.wav"} {
		if err := os.WriteFile(filepath.Join(f.dir, "2026/11/22", name), wav, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	store := &memCalls{recs: map[string]*calls.Record{
		"c1": {ID: "c1", Direction: "inbound", Caller: "+79161234567", Rung: []string{"ivanov"}, AnsweredBy: "ivanov",
			Legs: []calls.Leg{{N: 1, Employee: "ivanov", Recording: "2026/11/22/c1-1.wav"}}},
		"c2": {ID: "c2", Direction: "inbound", Caller: "+79167654321", Rung: []string{"petrov"}, AnsweredBy: "petrov",
			Legs: []calls.Leg{{N: 1, Employee: "petrov", Recording: "2026/11/22/c2-1.wav"}}},
	}}
	f.links = &recordings.Links{Key: []byte("0123456789abcdef0123456789abcdef"), TTL: 7 * 24 * time.Hour,
		BaseURL: "https://callgate.example.ru", Now: f.clock}
	f.s = &Server{
		Tokens: NewTokens([]string{adminTok},
			Token{Scope: "employee:ivanov", Token: ivanovTok}, Token{Scope: "employee:petrov", Token: petrovTok},
			Token{Scope: "crm:retailcrm", Token: crmTok}),
		Gatherer:   prometheus.NewRegistry(),
		Calls:      store,
		Recordings: &Recordings{Links: f.links, Files: recordings.New(recordings.Config{Dir: f.dir}), OwnOnly: true},
		Events:     NewFeed(8),
		Dialer:     fakeDialer{},
		CRM:        fakeQueues{},
	}
	f.srv = httptest.NewServer(f.s.Handler())
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) clock() time.Time {
	f.nowMu.Lock()
	defer f.nowMu.Unlock()
	return f.now
}

func (f *fixture) do(t *testing.T, method, path, token string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	return f.doBody(t, method, path, token, "", hdr...)
}

func (f *fixture) doBody(t *testing.T, method, path, token, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, f.srv.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

func errCode(b []byte) string {
	var e struct{ Error struct{ Code string } }
	_ = json.Unmarshal(b, &e)
	return e.Error.Code
}

func TestScopedTokens(t *testing.T) {
	f := newFixture(t)
	for tok, want := range map[string]int{adminTok: 200, ivanovTok: 403, crmTok: 403} {
		if res, b := f.do(t, "GET", "/metrics", tok); res.StatusCode != want {
			t.Errorf("metrics with %s: %d %s", tok[:6], res.StatusCode, b)
		}
	}
	// An employee lists only their own calls and cannot read another's.
	_, b := f.do(t, "GET", "/api/v1/calls", ivanovTok)
	var list struct{ Calls []calls.Record }
	_ = json.Unmarshal(b, &list)
	if len(list.Calls) != 1 || list.Calls[0].ID != "c1" {
		t.Fatalf("ivanov lists %s", b)
	}
	if res, b := f.do(t, "GET", "/api/v1/calls?employee=petrov", ivanovTok); res.StatusCode != 403 || errCode(b) != "forbidden" {
		t.Fatalf("listing petrov's calls: %d %s", res.StatusCode, b)
	}
	if res, _ := f.do(t, "GET", "/api/v1/calls/c2", ivanovTok); res.StatusCode != 404 {
		t.Fatalf("ivanov read petrov's call: %d", res.StatusCode)
	}
	if res, _ := f.do(t, "GET", "/api/v1/calls/c2", adminTok); res.StatusCode != 200 {
		t.Fatalf("admin cannot read a call: %d", res.StatusCode)
	}
	_, b = f.do(t, "GET", "/api/v1/calls", crmTok)
	_ = json.Unmarshal(b, &list)
	if len(list.Calls) != 2 {
		t.Fatalf("crm lists %s", b)
	}
}

func TestFailedAttemptsAreRateLimited(t *testing.T) {
	f := newFixture(t)
	for i := range failBurst {
		if res, _ := f.do(t, "GET", "/api/v1/calls", "wrong-token-"+strconv.Itoa(i)); res.StatusCode != 401 {
			t.Fatalf("attempt %d: %d", i, res.StatusCode)
		}
	}
	res, b := f.do(t, "GET", "/api/v1/calls", "wrong-token-x")
	if res.StatusCode != 429 || errCode(b) != "rate_limited" || res.Header.Get("Retry-After") == "" {
		t.Fatalf("after %d failures: %d %s", failBurst, res.StatusCode, b)
	}
	// Tokens cannot be guessed: the right one is checked first and
	// accepted even from a client that failed (only failures are limited).
	if res, _ := f.do(t, "GET", "/api/v1/calls", adminTok); res.StatusCode != 200 {
		t.Fatalf("right token from a blocked source got %d", res.StatusCode)
	}
	// Signed-link guesses count too.
	if res, _ := f.do(t, "GET", "/api/v1/recordings/c1-1?exp=1&sig=00", ""); res.StatusCode != 429 {
		t.Fatalf("signed link from a blocked source: %d", res.StatusCode)
	}
}

func TestRecordingLinks(t *testing.T) {
	f := newFixture(t)
	want, _ := os.ReadFile(filepath.Join(f.dir, "2026/11/22/c1-1.wav"))
	res, b := f.do(t, "POST", "/api/v1/recordings/c1-1/link", adminTok)
	var link struct {
		URL     string
		Expires time.Time
	}
	if err := json.Unmarshal(b, &link); err != nil || res.StatusCode != 200 {
		t.Fatalf("mint: %d %s", res.StatusCode, b)
	}
	if !strings.HasPrefix(link.URL, "https://callgate.example.ru/api/v1/recordings/c1-1?") || !link.Expires.Equal(f.now.Add(7*24*time.Hour)) {
		t.Fatalf("link %+v", link)
	}
	path := strings.TrimPrefix(link.URL, "https://callgate.example.ru")

	res, b = f.do(t, "GET", path, "")
	if res.StatusCode != 200 || !bytes.Equal(b, want) || res.Header.Get("Content-Type") != "audio/wav" {
		t.Fatalf("signed GET: %d %q %d bytes", res.StatusCode, res.Header.Get("Content-Type"), len(b))
	}
	res, b = f.do(t, "GET", path, "", "Range", "bytes=12-23")
	if res.StatusCode != 206 || !bytes.Equal(b, want[12:24]) || res.Header.Get("Content-Range") != "bytes 12-23/"+strconv.Itoa(len(want)) {
		t.Fatalf("range: %d %q %q", res.StatusCode, b, res.Header.Get("Content-Range"))
	}
	res, b = f.do(t, "HEAD", path, "")
	if res.StatusCode != 200 || len(b) != 0 || res.Header.Get("Content-Length") != strconv.Itoa(len(want)) {
		t.Fatalf("head: %d %d %q", res.StatusCode, len(b), res.Header.Get("Content-Length"))
	}

	// Tampered: another leg with the same signature, or a longer expiry.
	if res, b := f.do(t, "GET", strings.Replace(path, "c1-1", "c2-1", 1), ""); res.StatusCode != 403 || errCode(b) != "bad_link" {
		t.Fatalf("signature reused for another leg: %d %s", res.StatusCode, b)
	}
	exp := strconv.FormatInt(link.Expires.Unix(), 10)
	if res, _ := f.do(t, "GET", strings.Replace(path, exp, strconv.FormatInt(link.Expires.Unix()+86400, 10), 1), ""); res.StatusCode != 403 {
		t.Fatalf("extended expiry accepted: %d", res.StatusCode)
	}
	// Expired.
	f.nowMu.Lock()
	f.now = f.now.Add(7*24*time.Hour + time.Second)
	f.nowMu.Unlock()
	if res, b := f.do(t, "GET", path, ""); res.StatusCode != 403 || !strings.Contains(string(b), "expired") {
		t.Fatalf("expired link: %d %s", res.StatusCode, b)
	}

	// Tokens: own recording yes, another employee's no, admin yes.
	if res, b := f.do(t, "GET", "/api/v1/recordings/c1-1", ivanovTok); res.StatusCode != 200 || !bytes.Equal(b, want) {
		t.Fatalf("own recording: %d", res.StatusCode)
	}
	if res, b := f.do(t, "GET", "/api/v1/recordings/c2-1", ivanovTok); res.StatusCode != 403 || errCode(b) != "forbidden" {
		t.Fatalf("another's recording: %d %s", res.StatusCode, b)
	}
	if res, _ := f.do(t, "POST", "/api/v1/recordings/c2-1/link", ivanovTok); res.StatusCode != 403 {
		t.Fatalf("minted a link to another's recording: %d", res.StatusCode)
	}
	if res, _ := f.do(t, "GET", "/api/v1/recordings/c2-1", ""); res.StatusCode != 401 {
		t.Fatalf("no token, no link: %d", res.StatusCode)
	}
	// With recording_access = "all" employees may hear every call.
	f.s.Recordings.OwnOnly = false
	if res, _ := f.do(t, "GET", "/api/v1/recordings/c2-1", ivanovTok); res.StatusCode != 200 {
		t.Fatalf("access all: %d", res.StatusCode)
	}
	// Deleted by retention; unknown legs.
	os.Remove(filepath.Join(f.dir, "2026/11/22/c1-1.wav"))
	if res, b := f.do(t, "GET", "/api/v1/recordings/c1-1", adminTok); res.StatusCode != 410 || errCode(b) != "recording_deleted" {
		t.Fatalf("deleted: %d %s", res.StatusCode, b)
	}
	for _, leg := range []string{"c1-2", "nope", "c9-1", "-1"} {
		if res, b := f.do(t, "GET", "/api/v1/recordings/"+leg, adminTok); res.StatusCode != 404 || errCode(b) != "recording_not_found" {
			t.Fatalf("%s: %d %s", leg, res.StatusCode, b)
		}
	}
}

// stream opens /api/v1/events; it returns once the server has registered
// the subscription.
func (f *fixture) stream(t *testing.T, token, lastID string) <-chan apitest.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := apitest.Subscribe(ctx, nil, f.srv.URL, token, lastID)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func next(t *testing.T, ch <-chan apitest.Event) apitest.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("stream ended")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	return apitest.Event{}
}

func quiet(t *testing.T, ch <-chan apitest.Event) {
	t.Helper()
	select {
	case ev := <-ch:
		t.Fatalf("unexpected event %+v", ev)
	case <-time.After(150 * time.Millisecond):
	}
}

func ringing(id, employee string) calls.Event {
	return calls.Event{Kind: b2bua.EventRinging, Record: &calls.Record{ID: id, Direction: "inbound", Caller: "+7916", Rung: []string{employee}, Started: time.Now()}}
}

func TestEventStreamFiltersAndResumes(t *testing.T) {
	f := newFixture(t)
	iv := f.stream(t, ivanovTok, "")
	adm := f.stream(t, adminTok, "")
	f.s.Events.Publish(ringing("p1", "petrov"))
	f.s.Events.Publish(ringing("i1", "ivanov"))
	ev := next(t, iv)
	if ev.Kind != "ringing" || ev.Fields["call_id"] != "i1" || ev.ID != "2" {
		t.Fatalf("ivanov got %+v", ev)
	}
	quiet(t, iv) // petrov's call never reaches ivanov
	if a, b := next(t, adm), next(t, adm); a.Fields["call_id"] != "p1" || b.Fields["call_id"] != "i1" {
		t.Fatalf("admin got %+v %+v", a, b)
	}
	// Internal calls are not for CRMs.
	crm := f.stream(t, crmTok, "")
	in := ringing("int1", "ivanov")
	in.Record.Internal = true
	f.s.Events.Publish(in)
	f.s.Events.Publish(ringing("i2", "ivanov"))
	if ev := next(t, crm); ev.Fields["call_id"] != "i2" {
		t.Fatalf("crm got %+v", ev)
	}

	// ivanov reconnects after event 2: he missed int1 (3) and i2 (4), once each.
	re := f.stream(t, ivanovTok, "2")
	if a, b := next(t, re), next(t, re); a.ID != "3" || b.ID != "4" {
		t.Fatalf("resume got %s %s", a.ID, b.ID)
	}
	quiet(t, re)
	f.s.Events.Publish(ringing("i3", "ivanov"))
	if ev := next(t, re); ev.ID != "5" {
		t.Fatalf("live after resume: %+v", ev)
	}

	// The backlog holds 8 events: resuming from before it says so.
	for i := range 10 {
		f.s.Events.Publish(ringing("x"+strconv.Itoa(i), "ivanov"))
	}
	old := f.stream(t, ivanovTok, "1")
	if ev := next(t, old); ev.Kind != "gap" {
		t.Fatalf("no gap marker: %+v", ev)
	}
	if ev := next(t, old); ev.ID != "8" {
		t.Fatalf("first after gap: %+v", ev)
	}
	if res, b := f.do(t, "GET", "/api/v1/events", ivanovTok, "Last-Event-ID", "abc"); res.StatusCode != 400 || errCode(b) != "bad_last_event_id" {
		t.Fatalf("bad Last-Event-ID: %d %s", res.StatusCode, b)
	}
}

func TestEventStreamHeartbeat(t *testing.T) {
	f := newFixture(t)
	f.s.Events.Heartbeat = 50 * time.Millisecond
	req, _ := http.NewRequest("GET", f.srv.URL+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+adminTok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	deadline := time.AfterFunc(5*time.Second, func() { res.Body.Close() })
	defer deadline.Stop()
	for sc.Scan() {
		if sc.Text() == ": heartbeat" {
			return
		}
	}
	t.Fatal("no heartbeat")
}

// fakeQueues is one RetailCRM queue with a dead letter.
type fakeQueues struct{}

func (fakeQueues) Queues() map[string]outbox.Status {
	return map[string]outbox.Status{"retailcrm": {Depth: 3, OldestAge: time.Minute, Dead: 1,
		LastError: "retailcrm /api/v5/telephony/call/event: 400 Validation error"}}
}

func (fakeQueues) RetryDead(name string) (int, error) {
	if name != "retailcrm" {
		return 0, errors.New("no CRM \"" + name + "\" is enabled")
	}
	return 1, nil
}
