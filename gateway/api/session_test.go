package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// A console tab whose session ended keeps asking (its event stream
// reconnects): it is told to log in again and the address is not locked
// out, while wrong passwords still are.
func TestEndedSessionDoesNotLockTheAddressOut(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("right-password"), bcrypt.MinCost)
	s := &Server{Tokens: NewTokens(nil), Sessions: NewSessions([]Account{{Employee: "ivanov", Role: "employee", Hash: hash}}, time.Hour, false)}
	s.Calls = &memCalls{}
	h := s.Handler()
	do := func(method, path, body string, cookie *http.Cookie) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.RemoteAddr = "192.0.2.7:40000"
		req.Header.Set("Content-Type", "application/json")
		if cookie != nil {
			req.AddCookie(cookie)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	stale := &http.Cookie{Name: CookieName, Value: "a-session-from-before-the-restart"}
	for range 30 {
		if w := do("GET", "/api/v1/calls", "", stale); w.Code != 401 || !strings.Contains(w.Body.String(), "session_expired") {
			t.Fatalf("ended session: %d %s", w.Code, w.Body)
		}
	}
	w := do("POST", "/api/v1/session", `{"login":"ivanov","password":"right-password"}`, nil)
	if w.Code != 200 {
		t.Fatalf("login after 30 requests with an ended session: %d %s", w.Code, w.Body)
	}
	for range 10 {
		do("POST", "/api/v1/session", `{"login":"ivanov","password":"guess"}`, nil)
	}
	if w := do("POST", "/api/v1/session", `{"login":"ivanov","password":"right-password"}`, nil); w.Code != 429 {
		t.Fatalf("after 10 wrong passwords: %d, want 429", w.Code)
	}
}
