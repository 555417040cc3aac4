package calls

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"callgate/gateway/store"

	bolt "go.etcd.io/bbolt"
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

// Records written as calls end (one at a time, start times almost in
// order) fill the bucket's leaf pages to about 90%, not bbolt's default
// half: a year of history takes half the disk and half the backup.
func TestRecordsFillTheirPages(t *testing.T) {
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := NewStore(db)
	base := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	batch := make([]Record, 0, 100)
	for i := range 6000 {
		// Calls end out of start order: a long call started before short
		// ones that end first.
		start := base.Add(time.Duration(i) * time.Minute)
		if i%10 == 3 {
			start = start.Add(-7 * time.Minute)
		}
		batch = append(batch, Record{ID: fmt.Sprintf("call-%06d@10.0.0.1", i), Direction: "inbound", Outside: "+79161234567",
			Rung: []string{"ivanov"}, AnsweredBy: "ivanov", Started: start, Ended: start.Add(3 * time.Minute), Result: "answered"})
		if len(batch) == cap(batch) || i%7 == 0 { // the writer saves what has ended by each flush
			if err := s.PutAll(batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := s.PutAll(batch); err != nil {
		t.Fatal(err)
	}
	var fill float64
	err = db.View(func(tx *bolt.Tx) error {
		st := tx.Bucket(Bucket).Stats()
		fill = float64(st.LeafInuse) / float64(st.LeafPageN*tx.DB().Info().PageSize)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fill < 0.8 {
		t.Fatalf("leaf pages %.0f%% full, want about 90%%", fill*100)
	}
}
