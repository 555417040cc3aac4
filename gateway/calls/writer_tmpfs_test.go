package calls

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"callgate/gateway/store"
	"callgate/internal/testenv"
	"callgate/media/record"
)

// A real database on a tiny tmpfs that fills up: call records wait in
// memory while bbolt's writes fail with ENOSPC and land, with the database
// intact, once space is freed. Mounting needs root: CI runs as root,
// elsewhere the test is skipped with a message.
func TestWriterOnFullTmpfsDataDir(t *testing.T) {
	dir := t.TempDir()
	testenv.MountTmpfs(t, dir, "2m")
	db, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := NewStore(db)
	var logs bytes.Buffer
	w := NewWriter(s.PutAll, slog.New(slog.NewTextHandler(&logs, nil)))
	w.MinBackoff, w.MaxBackoff = 20*time.Millisecond, 100*time.Millisecond
	in := make(chan Record, 64)
	done := make(chan struct{})
	go func() { w.Run(in); close(done) }()

	free, err := record.FreeBytes(dir)
	if err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, free), 0o600); err != nil {
		t.Fatal(err)
	}
	if left, _ := record.FreeBytes(dir); left != 0 {
		t.Fatalf("%d bytes left free", left)
	}
	// Records with some bulk, until the database needs a page it has not got.
	base := time.Now()
	rec := func(i int) Record {
		return Record{ID: fmt.Sprintf("call-%03d", i), Started: base.Add(time.Duration(i) * time.Second), Result: "answered",
			Ended: base.Add(time.Minute), Reason: strings.Repeat("x", 2000)}
	}
	n := 0
	for ; n < 400 && w.Status().Errors == 0; n++ {
		in <- rec(n)
		time.Sleep(5 * time.Millisecond)
	}
	if w.Status().Errors == 0 {
		t.Fatal("the full tmpfs never refused a write")
	}
	waitFor(t, "records waiting", func() bool { return w.Status().Pending > 0 })
	in <- rec(n) // one more while the disk is full
	n++
	time.Sleep(200 * time.Millisecond)
	if st := w.Status(); st.Pending == 0 || !strings.Contains(st.LastError, "no space") {
		t.Fatalf("status on a full disk: %+v", st)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "records to land after space was freed", func() bool { return w.Status().Pending == 0 })
	for i := 0; i < n; i++ {
		if r, err := s.Get(rec(i).ID); err != nil || r.Result != "answered" {
			t.Fatalf("record %d after space returned: %+v %v", i, r, err)
		}
	}
	if st := w.Status(); st.Lost != 0 {
		t.Fatalf("%+v", st)
	}
	t.Logf("%d records, %d failed write attempts while full", n, w.Status().Errors)
	// The failed transactions left the file intact: it reopens with all.
	close(in)
	<-done
	db.Close()
	db, err = store.Open(dir)
	if err != nil {
		t.Fatalf("reopening after the disk was full: %v", err)
	}
	defer db.Close()
	if list, err := NewStore(db).List(Filter{Limit: 500}); err != nil || len(list) != n {
		t.Fatalf("%d records after reopening, want %d: %v", len(list), n, err)
	}
}
