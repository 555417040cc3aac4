package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"callgate/gateway/calls"

	"golang.org/x/crypto/bcrypt"
)

// The history with one client is everyone's: an employee who sees only
// their own calls finds every call with a client by the client's whole
// number, whoever took it; a fragment of a number, or another employee's
// list, stays their own.
func TestSearchByClientNumberShowsEveryonesCalls(t *testing.T) {
	f := newFixture(t)
	store := f.s.Calls.(*memCalls)
	store.mu.Lock()
	store.recs["c1"].Outside = "+79161234567"
	store.recs["c2"].Outside = "+79167654321"
	store.recs["c3"] = &calls.Record{ID: "c3", Direction: "inbound", Outside: "+79161234567", Rung: []string{"petrov"}, AnsweredBy: "petrov"}
	store.mu.Unlock()
	ids := func(query string) []string {
		t.Helper()
		res, b := f.do(t, "GET", "/api/v1/calls?"+query, ivanovTok)
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d %s", query, res.StatusCode, b)
		}
		var list struct{ Calls []calls.Record }
		if err := json.Unmarshal(b, &list); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range list.Calls {
			out = append(out, r.ID)
		}
		slices.Sort(out)
		return out
	}
	for query, want := range map[string][]string{
		"": {"c1"},
		"number=" + url.QueryEscape("+79161234567"):       {"c1", "c3"},
		"number=79161234567":                              {"c1", "c3"},
		"number=" + url.QueryEscape("+7 (916) 123-45-67"): {"c1", "c3"},
		"number=" + url.QueryEscape("8 916 123-45-67"):    {"c1", "c3"}, // the trunk prefix, as routing reads it
		"number=7916": {"c1"}, // a fragment: own calls only
		"number=" + url.QueryEscape("+79167654321"): {"c2"}, // petrov's client
	} {
		if got := ids(query); !slices.Equal(got, want) {
			t.Errorf("ivanov, %q: %v, want %v", query, got, want)
		}
	}
	if res, _ := f.do(t, "GET", "/api/v1/calls?employee=petrov&number=79161234567", ivanovTok); res.StatusCode != 403 {
		t.Fatalf("petrov's list with a number: %d, want 403", res.StatusCode)
	}
	// A call found this way is still not another employee's to open or hear
	// with recording_access "own".
	if res, _ := f.do(t, "GET", "/api/v1/calls/c3", ivanovTok); res.StatusCode != 404 {
		t.Fatalf("ivanov opened petrov's call: %d", res.StatusCode)
	}
}

// console.visibility: with "own" an employee's console lists the calls
// they rang on or took; with "all" every call, and opens any of them.
func TestConsoleVisibilityOwnAndAll(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("right-password"), bcrypt.MinCost)
	recs := map[string]*calls.Record{
		"c1": {ID: "c1", Direction: "inbound", Outside: "+79161234567", Rung: []string{"ivanov"}, AnsweredBy: "ivanov"},
		"c2": {ID: "c2", Direction: "inbound", Outside: "+79167654321", Rung: []string{"petrov"}, AnsweredBy: "petrov"},
	}
	for _, tc := range []struct {
		all  bool
		want []string
	}{{false, []string{"c1"}}, {true, []string{"c1", "c2"}}} {
		s := &Server{Tokens: NewTokens(nil), Calls: &memCalls{recs: recs},
			Sessions: NewSessions([]Account{{Employee: "ivanov", Role: "employee", Hash: hash}}, time.Hour, tc.all)}
		h := s.Handler()
		do := func(method, path, body string, c *http.Cookie) *httptest.ResponseRecorder {
			req := httptest.NewRequest(method, path, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if c != nil {
				req.AddCookie(c)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			return w
		}
		w := do("POST", "/api/v1/session", `{"login":"ivanov","password":"right-password"}`, nil)
		var cookie *http.Cookie
		for _, c := range w.Result().Cookies() {
			if c.Name == CookieName {
				cookie = c
			}
		}
		if w.Code != 200 || cookie == nil {
			t.Fatalf("login: %d %s", w.Code, w.Body)
		}
		w = do("GET", "/api/v1/calls", "", cookie)
		var list struct{ Calls []calls.Record }
		if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil || w.Code != 200 {
			t.Fatalf("list: %d %s", w.Code, w.Body)
		}
		var got []string
		for _, r := range list.Calls {
			got = append(got, r.ID)
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("visibility all=%v: ivanov lists %v, want %v", tc.all, got, tc.want)
		}
		if w := do("GET", "/api/v1/calls/c2", "", cookie); (w.Code == 200) != tc.all {
			t.Errorf("visibility all=%v: opening petrov's call: %d", tc.all, w.Code)
		}
	}
}
