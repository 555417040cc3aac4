package calls

import (
	"testing"
	"time"

	"callgate/gateway/store"
)

func reportStore(t *testing.T) (*Store, time.Time) {
	t.Helper()
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s := NewStore(db)
	day := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	at := func(h int) time.Time { return day.Add(time.Duration(h) * time.Hour) }
	leg := func(emp string, n int, talk float64) Leg { return Leg{N: n, Employee: emp, TalkSeconds: talk} }
	recs := []Record{
		// Day 1: ivanov misses a client (no answer), then calls back and talks.
		{ID: "m1", Direction: "inbound", Outside: "+79160000001", Rung: []string{"ivanov"}, Started: at(0), Ended: at(0).Add(30 * time.Second), Result: "no-answer", WaitSeconds: 30},
		{ID: "cb", Direction: "outbound", Outside: "+79160000001", Rung: []string{"ivanov"}, AnsweredBy: "ivanov", Started: at(1), Answered: at(1).Add(5 * time.Second), Ended: at(1).Add(65 * time.Second), Result: "answered", TalkSeconds: 60, Legs: []Leg{leg("ivanov", 1, 60)}},
		// Day 1: a busy miss for petrov, never handled; an abandoned call for both.
		{ID: "m2", Direction: "inbound", Outside: "+79160000002", Rung: []string{"petrov"}, Started: at(2), Ended: at(2).Add(time.Second), Result: "busy"},
		{ID: "m3", Direction: "inbound", Outside: "+79160000003", Rung: []string{"ivanov", "petrov"}, Started: at(3), Ended: at(3).Add(10 * time.Second), Result: "abandoned", WaitSeconds: 10},
		// Day 2: an inbound answered by ivanov after 4 s, transferred to petrov.
		{ID: "t1", Direction: "inbound", Outside: "+79160000004", Rung: []string{"ivanov", "petrov"}, AnsweredBy: "ivanov", Started: at(24), Answered: at(24).Add(4 * time.Second), Ended: at(24).Add(124 * time.Second), Result: "answered", WaitSeconds: 4, TalkSeconds: 120,
			Legs: []Leg{leg("ivanov", 1, 40), leg("petrov", 2, 80)}},
		// Day 2: the client of m3 calls again and gets through: m3 is handled.
		{ID: "again", Direction: "inbound", Outside: "+79160000003", Rung: []string{"petrov"}, AnsweredBy: "petrov", Started: at(25), Answered: at(25).Add(2 * time.Second), Ended: at(25).Add(32 * time.Second), Result: "answered", WaitSeconds: 2, TalkSeconds: 30, Legs: []Leg{leg("petrov", 1, 30)}},
		// An internal call counts nowhere; an unfinished one neither.
		{ID: "int", Direction: "internal", Internal: true, Rung: []string{"petrov"}, Started: at(26), Ended: at(26).Add(time.Minute), Result: "no-answer"},
		{ID: "open", Direction: "inbound", Outside: "+79160000009", Rung: []string{"ivanov"}, Started: at(27)},
	}
	for i := range recs {
		if err := s.Put(&recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	return s, day
}

func TestMissedCallsAndHandling(t *testing.T) {
	s, _ := reportStore(t)
	ids := func(f MissedFilter) map[string]bool {
		list, err := s.Missed(f)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, m := range list {
			out[m.ID] = m.Handled
		}
		return out
	}
	all := ids(MissedFilter{})
	if len(all) != 3 || !all["m1"] || all["m2"] || !all["m3"] {
		t.Fatalf("missed with handled flags: %v (m1 called back, m3 called again)", all)
	}
	if open := ids(MissedFilter{Open: true}); len(open) != 1 || !contains(open, "m2") {
		t.Fatalf("open: %v", open)
	}
	if mine := ids(MissedFilter{Employee: "ivanov"}); len(mine) != 2 || !contains(mine, "m1") || !contains(mine, "m3") {
		t.Fatalf("ivanov's: %v", mine)
	}
}

func contains(m map[string]bool, k string) bool { _, ok := m[k]; return ok }

func TestStatsPerEmployeeAndDay(t *testing.T) {
	s, day := reportStore(t)
	st, err := s.Stats(day.Truncate(24*time.Hour), day.Truncate(24*time.Hour).AddDate(0, 0, 3), time.UTC, "")
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]EmployeeStats{}
	for _, e := range st.Employees {
		by[e.Employee] = e
	}
	iv, pe := by["ivanov"], by["petrov"]
	// ivanov: m1 missed, cb out answered, m3 missed, t1 in answered (40 s, waited 4 s).
	if iv.Inbound != 3 || iv.Outbound != 1 || iv.Answered != 1 || iv.Missed != 2 || iv.TalkSeconds != 100 || iv.AvgTalk != 50 || iv.AvgWait != 4 {
		t.Fatalf("ivanov %+v", iv)
	}
	// petrov: m2 missed, m3 missed, t1 second leg (80 s), again (30 s, waited 2 s).
	if pe.Inbound != 4 || pe.Outbound != 0 || pe.Answered != 2 || pe.Missed != 2 || pe.TalkSeconds != 110 || pe.AvgTalk != 55 || pe.AvgWait != 2 {
		t.Fatalf("petrov %+v", pe)
	}
	if len(st.Days) != 3 || st.Days[0] != (Day{Date: "2026-11-23", Calls: 4, Answered: 1, Missed: 3}) ||
		st.Days[1] != (Day{Date: "2026-11-24", Calls: 2, Answered: 2}) || st.Days[2] != (Day{Date: "2026-11-25"}) {
		t.Fatalf("days %+v", st.Days)
	}
	own, _ := s.Stats(day.Truncate(24*time.Hour), day.AddDate(0, 0, 3), time.UTC, "petrov")
	if len(own.Employees) != 1 || own.Employees[0].Employee != "petrov" || own.Days[0].Calls != 2 {
		t.Fatalf("petrov's own stats %+v", own)
	}
}

func TestMissedOutOfHours(t *testing.T) {
	s, day := reportStore(t)
	// Business hours 10:00-18:00 UTC: m1 (09:00) came before opening.
	list, err := s.Missed(MissedFilter{OutOfHours: func(at time.Time) bool { return at.Hour() < 10 || at.Hour() >= 18 }})
	if err != nil {
		t.Fatal(err)
	}
	why := map[string]string{}
	for _, m := range list {
		why[m.ID] = m.Why
	}
	if why["m1"] != "out-of-hours" || why["m2"] != "busy" || why["m3"] != "abandoned" {
		t.Fatalf("reasons %v (day %s)", why, day)
	}
}
