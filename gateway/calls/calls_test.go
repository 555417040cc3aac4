package calls

import (
	"errors"
	"testing"
	"time"

	"callgate/gateway/store"
)

func TestStorePutGetListInterrupted(t *testing.T) {
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := NewStore(db)
	base := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	recs := []Record{
		{ID: "a", Direction: "inbound", Outside: "+79161234567", Rung: []string{"ivanov"}, AnsweredBy: "ivanov", Started: base, Ended: base.Add(time.Minute), Result: "answered"},
		{ID: "b", Direction: "outbound", Outside: "+74951234567", Rung: []string{"petrov"}, Started: base.Add(time.Hour), Ended: base.Add(61 * time.Minute), Result: "busy"},
		{ID: "c", Direction: "inbound", Outside: "+79161234567", Rung: []string{"ivanov", "petrov"}, Started: base.Add(2 * time.Hour), Answered: base.Add(2*time.Hour + 5*time.Second), Result: "answered"},
	}
	for i := range recs {
		if err := s.Put(&recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := s.Get("b"); err != nil || r.Result != "busy" {
		t.Fatalf("get: %+v %v", r, err)
	}
	if _, err := NewStore(db).Get("b"); err != nil { // without the in-memory index
		t.Fatal(err)
	}
	if _, err := s.Get("zzz"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	ids := func(f Filter) string {
		list, err := s.List(f)
		if err != nil {
			t.Fatal(err)
		}
		out := ""
		for _, r := range list {
			out += r.ID
		}
		return out
	}
	for _, tc := range []struct {
		f    Filter
		want string
	}{
		{Filter{}, "cba"},
		{Filter{Employee: "petrov"}, "cb"},
		{Filter{Number: "+79161234567"}, "ca"},
		{Filter{Result: "busy"}, "b"},
		{Filter{From: base.Add(30 * time.Minute), To: base.Add(90 * time.Minute)}, "b"},
		{Filter{Limit: 1}, "c"},
	} {
		if got := ids(tc.f); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.f, got, tc.want)
		}
	}
	closed, err := s.MarkInterrupted(base.Add(3 * time.Hour))
	if err != nil || len(closed) != 1 || closed[0] != "c" {
		t.Fatalf("interrupted %v %v", closed, err)
	}
	r, _ := s.Get("c")
	if r.Result != "interrupted" || r.TalkSeconds < 3000 {
		t.Fatalf("after crash: %+v", r)
	}
}
