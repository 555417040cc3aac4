package outbox

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// fullDB is a database on a disk that fills up: while full, every write
// transaction fails as bbolt's does with ENOSPC, and changes nothing.
type fullDB struct {
	*bolt.DB
	full   atomic.Bool
	writes atomic.Int32
}

func (d *fullDB) Update(fn func(*bolt.Tx) error) error {
	d.writes.Add(1)
	if d.full.Load() {
		return errors.New("write callgate.db: " + syscall.ENOSPC.Error())
	}
	return d.DB.Update(fn)
}

func TestPutHeldInMemoryWhileDiskIsFullLandsAndIsDeliveredAfter(t *testing.T) {
	db := &fullDB{DB: openDB(t, filepath.Join(t.TempDir(), "db"))}
	defer db.Close()
	c := newCRM()
	var logs bytes.Buffer
	o, err := Open(db, "retailcrm", c, Options{MinBackoff: 10 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&logs, nil)),
		SaveMinBackoff: 20 * time.Millisecond, SaveMaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	db.full.Store(true)
	all := items(3, 2)
	if err := o.Put(all[:3]...); err != nil {
		t.Fatalf("put on a full disk: %v", err)
	}
	if err := o.Put(all[3:]...); err != nil { // behind the held ones
		t.Fatalf("second put: %v", err)
	}
	waitFor(t, "save retries", func() bool { return db.writes.Load() > 4 })
	st := o.Status()
	if st.Unsaved != 6 || st.WriteErrors < 3 || !strings.Contains(st.LastWriteError, "no space") || st.Depth != 0 {
		t.Fatalf("status while the disk is full: %+v", st)
	}
	if len(c.delivered()) != 0 {
		t.Fatal("delivered before it was stored")
	}

	db.full.Store(false)
	waitFor(t, "delivery after space returned", func() bool { return len(c.delivered()) == 6 })
	// The last delivery is acknowledged to the CRM before its item leaves
	// the queue: wait for the queue, then check nothing was lost.
	waitFor(t, "the queue to empty", func() bool { st := o.Status(); return st.Unsaved == 0 && st.Depth == 0 })
	if st := o.Status(); st.Lost != 0 || len(c.delivered()) != 6 {
		t.Fatalf("status after recovery: %+v, %d delivered", st, len(c.delivered()))
	}
	// Per call, in the order they were put.
	got := c.delivered()
	for _, call := range []string{"call0", "call1", "call2"} {
		if slices.Index(got, call+"-0") > slices.Index(got, call+"-1") {
			t.Fatalf("out of order: %v", got)
		}
	}
	for _, want := range []string{"kept in memory", "saved"} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestPutOverflowAndShutdownSayWhatIsLost(t *testing.T) {
	db := &fullDB{DB: openDB(t, filepath.Join(t.TempDir(), "db"))}
	defer db.Close()
	var logs bytes.Buffer
	o, err := Open(db, "megaplan", newCRM(), Options{MaxUnsaved: 4, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	db.full.Store(true)
	err = o.Put(items(6, 1)...)
	if !errors.Is(err, ErrOverflow) || !strings.Contains(err.Error(), "call4/event") || !strings.Contains(err.Error(), "call5/event") {
		t.Fatalf("overflow: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	o.Run(ctx)
	if st := o.Status(); st.Lost != 6 || st.Unsaved != 0 {
		t.Fatalf("%+v", st)
	}
	if !strings.Contains(logs.String(), "lost at shutdown") || !strings.Contains(logs.String(), "call_id=call3") {
		t.Fatalf("shutdown loss not logged:\n%s", logs.String())
	}
	// After Run has ended nothing would save them: Put says so at once.
	if err := o.Put(items(1, 1)...); err == nil || !strings.Contains(err.Error(), "no space") || o.Status().Lost != 7 {
		t.Fatalf("put after shutdown on a full disk: %v, %+v", err, o.Status())
	}
}
