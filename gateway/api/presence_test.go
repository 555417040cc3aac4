package api

import (
	"encoding/json"
	"errors"
	"testing"
)

// memPresence keeps statuses like gateway/presence and remembers what
// the console set.
type memPresence struct{ m map[string]string }

func (p *memPresence) Status(e string) string {
	if s, ok := p.m[e]; ok {
		return s
	}
	return "free"
}

func (p *memPresence) Set(e, s string) error {
	if s == "break" && e == "petrov" {
		return errors.New("the CRM queue is closed")
	}
	p.m[e] = s
	return nil
}

// An employee reads and sets their own status; a bad status, a token that
// is no employee's and a failing store are refused with their codes.
func TestPresenceEndpoints(t *testing.T) {
	f := newFixture(t)
	p := &memPresence{m: map[string]string{}}
	f.s.Presence = p
	f.srv.Config.Handler = f.s.Handler()
	status := func(b []byte) string {
		var v struct{ Status string }
		_ = json.Unmarshal(b, &v)
		return v.Status
	}
	if res, b := f.do(t, "GET", "/api/v1/presence", ivanovTok); res.StatusCode != 200 || status(b) != "free" {
		t.Fatalf("ivanov's status: %d %s", res.StatusCode, b)
	}
	if res, b := f.doBody(t, "PUT", "/api/v1/presence", ivanovTok, `{"status":"dinner"}`, "Content-Type", "application/json"); res.StatusCode != 200 || status(b) != "dinner" || p.m["ivanov"] != "dinner" {
		t.Fatalf("set dinner: %d %s", res.StatusCode, b)
	}
	for body, code := range map[string]string{`{"status":"vacation"}`: "bad_status", `{"status":"free","extra":1}`: "bad_status", `[]`: "bad_status"} {
		if res, b := f.doBody(t, "PUT", "/api/v1/presence", ivanovTok, body, "Content-Type", "application/json"); res.StatusCode != 400 || errCode(b) != code {
			t.Errorf("%s: %d %s, want 400 %s", body, res.StatusCode, b, code)
		}
	}
	if p.m["ivanov"] != "dinner" {
		t.Fatalf("a refused request changed the status to %q", p.m["ivanov"])
	}
	if res, b := f.do(t, "GET", "/api/v1/presence", adminTok); res.StatusCode != 400 || errCode(b) != "no_employee" {
		t.Fatalf("the admin token: %d %s", res.StatusCode, b)
	}
	if res, b := f.doBody(t, "PUT", "/api/v1/presence", petrovTok, `{"status":"break"}`, "Content-Type", "application/json"); res.StatusCode != 500 || errCode(b) != "presence_error" {
		t.Fatalf("a failing store: %d %s", res.StatusCode, b)
	}
}
