package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Replaced tokens apply to the next request: a removed token is refused,
// a new one works with its scope.
func TestTokensReplaced(t *testing.T) {
	tk := NewTokens([]string{"old-admin-token"}, Token{Scope: "employee:ivanov", Token: "ivanov-token"})
	if p, ok := tk.Lookup("ivanov-token"); !ok || p.Name != "ivanov" {
		t.Fatal("the configured token does not work")
	}
	tk.Replace([]string{"new-admin-token"}, Token{Scope: "crm:retailcrm", Token: "crm-token"})
	for _, gone := range []string{"old-admin-token", "ivanov-token"} {
		if tk.Valid(gone) {
			t.Fatalf("%s still works after it was removed", gone)
		}
	}
	if p, ok := tk.Lookup("new-admin-token"); !ok || p.Kind != "admin" {
		t.Fatal("the new admin token does not work")
	}
	if p, ok := tk.Lookup("crm-token"); !ok || p.Kind != "crm" || p.Name != "retailcrm" {
		t.Fatalf("the new CRM token: %+v %v", p, ok)
	}
}

// Replaced console accounts: a login in progress goes on with the
// account's new role and name; a removed account's login ends, so does one
// whose password changed; a new account can log in.
func TestSessionsReplaced(t *testing.T) {
	hash := func(pw string) []byte { h, _ := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost); return h }
	ivanov, petrov, sidorov := hash("ivanov-pass"), hash("petrov-pass"), hash("sidorov-pass")
	s := &Server{Tokens: NewTokens(nil), Calls: &memCalls{}, Sessions: NewSessions([]Account{
		{Employee: "ivanov", Role: "employee", Hash: ivanov}, {Employee: "petrov", Role: "employee", Hash: petrov},
		{Employee: "kozlov", Role: "employee", Hash: hash("kozlov-pass")}}, time.Hour, false)}
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
	login := func(who, pw string) *http.Cookie {
		w := do("POST", "/api/v1/session", `{"login":"`+who+`","password":"`+pw+`"}`, nil)
		if w.Code != 200 {
			t.Fatalf("login %s: %d %s", who, w.Code, w.Body)
		}
		return w.Result().Cookies()[0]
	}
	iv, pe, ko := login("ivanov", "ivanov-pass"), login("petrov", "petrov-pass"), login("kozlov", "kozlov-pass")

	s.Sessions.Replace([]Account{{Employee: "ivanov", Name: "Иванов", Role: "manager", Hash: ivanov},
		{Employee: "kozlov", Role: "employee", Hash: hash("kozlov-new")}, {Employee: "sidorov", Role: "employee", Hash: sidorov}},
		map[string]string{"ivanov": "Иванов", "sidorov": "Сидоров"}, false)

	w := do("GET", "/api/v1/session", "", iv)
	var info sessionInfo
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &info) != nil || info.Role != "manager" || info.Names["sidorov"] != "Сидоров" {
		t.Fatalf("ivanov's login after the reload: %d %s", w.Code, w.Body)
	}
	for who, c := range map[string]*http.Cookie{"petrov (removed)": pe, "kozlov (new password)": ko} {
		if w := do("GET", "/api/v1/session", "", c); w.Code != 401 {
			t.Fatalf("%s still logged in: %d", who, w.Code)
		}
	}
	if w := do("POST", "/api/v1/session", `{"login":"petrov","password":"petrov-pass"}`, nil); w.Code != 401 {
		t.Fatalf("the removed account logs in: %d", w.Code)
	}
	login("sidorov", "sidorov-pass")
	login("kozlov", "kozlov-new")
	if s.Sessions.Name("sidorov") != "Сидоров" {
		t.Fatal("names not replaced")
	}
}
