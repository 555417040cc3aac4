package api

import (
	"encoding/json"
	"net/url"
	"slices"
	"testing"

	"callgate/gateway/calls"
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
