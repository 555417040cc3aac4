package calls

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"callgate/gateway/store"
)

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestWriterKeepsRecordsWhileDiskIsFullAndSavesThemAfter(t *testing.T) {
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := NewStore(db)
	var full atomic.Bool
	var attempts atomic.Int32
	put := func(rs []Record) error {
		attempts.Add(1)
		if full.Load() {
			return &pathErr{syscall.ENOSPC}
		}
		return s.PutAll(rs)
	}
	var logs bytes.Buffer
	w := NewWriter(put, slog.New(slog.NewTextHandler(&logs, nil)))
	w.MinBackoff, w.MaxBackoff = 20*time.Millisecond, 100*time.Millisecond
	in := make(chan Record, 16)
	done := make(chan struct{})
	go func() { w.Run(in); close(done) }()

	base := time.Now()
	in <- Record{ID: "before", Started: base, Result: "answered", Ended: base}
	waitFor(t, "the first record", func() bool { _, err := s.Get("before"); return err == nil })

	full.Store(true)
	in <- Record{ID: "a", Started: base.Add(time.Second)}
	in <- Record{ID: "a", Started: base.Add(time.Second), Result: "answered", Ended: base.Add(time.Minute)} // a later event of the same call
	in <- Record{ID: "b", Started: base.Add(2 * time.Second), Result: "no-answer", Ended: base.Add(time.Minute)}
	waitFor(t, "retries", func() bool { return attempts.Load() > 4 })
	st := w.Status()
	if st.Pending != 2 || st.Errors < 3 || st.Since.IsZero() || !strings.Contains(st.LastError, "no space") {
		t.Fatalf("status while the disk is full: %+v", st)
	}
	if _, err := NewStore(db).Get("a"); !errors.Is(err, ErrNotFound) {
		t.Fatal("a record was saved while writes fail")
	}
	// Meanwhile the history shows the held records, latest version.
	s.ShowUnsaved(w)
	if r, err := s.Get("a"); err != nil || r.Result != "answered" {
		t.Fatalf("held record not shown: %+v %v", r, err)
	}
	if list, err := s.List(Filter{}); err != nil || len(list) != 3 || list[0].ID != "b" || list[1].ID != "a" || list[2].ID != "before" {
		t.Fatalf("history while the disk is full: %+v %v", list, err)
	}
	if list, _ := s.List(Filter{Result: "no-answer"}); len(list) != 1 || list[0].ID != "b" {
		t.Fatalf("filtered history: %+v", list)
	}
	if list, _ := s.List(Filter{Limit: 1}); len(list) != 1 || list[0].ID != "b" {
		t.Fatalf("limited history: %+v", list)
	}
	if p := w.Pending(); len(p) != 2 || p[0].ID != "a" || p[0].Result != "answered" {
		t.Fatalf("pending %+v", p)
	}

	full.Store(false) // space comes back
	waitFor(t, "the kept records to land", func() bool { return w.Status().Pending == 0 })
	for id, want := range map[string]string{"a": "answered", "b": "no-answer"} {
		if r, err := s.Get(id); err != nil || r.Result != want {
			t.Fatalf("%s after space returned: %+v %v", id, r, err)
		}
	}
	if st := w.Status(); !st.Since.IsZero() || st.Lost != 0 {
		t.Fatalf("status after recovery: %+v", st)
	}
	close(in)
	<-done
	if !strings.Contains(logs.String(), "kept in memory") || !strings.Contains(logs.String(), "saved") {
		t.Fatalf("failure and recovery not logged:\n%s", logs.String())
	}
}

func TestWriterOverflowAndShutdownLogWhatIsLost(t *testing.T) {
	var logs bytes.Buffer
	w := NewWriter(func([]Record) error { return &pathErr{syscall.ENOSPC} }, slog.New(slog.NewTextHandler(&logs, nil)))
	w.MaxPending, w.MinBackoff = 2, time.Hour
	in := make(chan Record, 8)
	for _, id := range []string{"x", "y", "x", "z"} { // x again takes no new slot
		in <- Record{ID: id}
	}
	close(in)
	w.Run(in)
	if st := w.Status(); st.Lost != 3 { // z overflowed; x and y unwritten at shutdown
		t.Fatalf("%+v", st)
	}
	for _, want := range []string{"call_id=z", "too many records", "lost at shutdown", "call_id=x", "call_id=y"} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

type pathErr struct{ errno syscall.Errno }

func (e *pathErr) Error() string { return "write /data/callgate.db: " + e.errno.Error() }
func (e *pathErr) Unwrap() error { return e.errno }
