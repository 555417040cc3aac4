package location

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// memStore is a Store in memory that counts writes and can refuse them.
type memStore struct {
	mu     sync.Mutex
	data   map[string][]byte
	writes int
	fail   error
	// eachErr fails reading.
	eachErr error
}

func newMemStore() *memStore { return &memStore{data: map[string][]byte{}} }

func (s *memStore) Each(fn func(string, []byte) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.eachErr != nil {
		return s.eachErr
	}
	for k, v := range s.data {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

func (s *memStore) Apply(changes map[string][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.writes++
	for k, v := range changes {
		if v == nil {
			delete(s.data, k)
		} else {
			s.data[k] = append([]byte(nil), v...)
		}
	}
	return nil
}

func (s *memStore) snapshot() (map[string][]Binding, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]Binding{}
	for k, v := range s.data {
		out[k], _ = Decode(v)
	}
	return out, s.writes
}

func (s *memStore) setFail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func register(t *testing.T, tb *Table, aor, contact string, exp time.Time) {
	t.Helper()
	_, err := tb.Modify(aor, time.Now(), func(cur []Binding) ([]Binding, error) {
		return append(cur, bind(aor, contact, exp)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func run(p *Persister) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

func TestRestoreKeepsLiveBindingsAndSkipsUnreadable(t *testing.T) {
	now := time.Now()
	st := newMemStore()
	src := New()
	register(t, src, "101", "sip:101@a", now.Add(time.Hour))
	register(t, src, "101", "sip:101@b", now.Add(time.Hour))
	register(t, src, "102", "sip:102@a", now.Add(-time.Second+time.Hour)) // expired by the restart below
	if err := src.Flush(st.Apply); err != nil {
		t.Fatal(err)
	}
	st.data["103"] = []byte("{not json")
	var log syncBuffer
	tb := New()
	p := NewPersister(tb, st, slog.New(slog.NewTextHandler(&log, nil)))
	n, err := p.Restore(now.Add(time.Hour - time.Millisecond))
	if err != nil || n != 2 || tb.Len() != 2 || len(tb.Lookup("101", now)) != 2 {
		t.Fatalf("restored %d (%v), table holds %d", n, err, tb.Len())
	}
	if !strings.Contains(log.String(), `msg="unreadable stored registration skipped" aor=103`) {
		t.Fatalf("unreadable entry not logged:\n%s", log.String())
	}
	// The store still holds the expired one until it is written again.
	if p.Stored() != 3 {
		t.Fatalf("stored %d", p.Stored())
	}
	st.eachErr = errors.New("cannot read")
	if _, err := NewPersister(New(), st, nil).Restore(now); err == nil || !strings.Contains(err.Error(), "cannot read") {
		t.Fatalf("a store that cannot be read: %v", err)
	}
}

// A burst of REGISTERs costs one write, and the store ends up holding what
// the table holds.
func TestRunWritesABurstAtOnce(t *testing.T) {
	now := time.Now()
	st := newMemStore()
	tb := New()
	p := NewPersister(tb, st, nil)
	for i := range 50 {
		aor := string(rune('A' + i%26))
		register(t, tb, aor, "sip:"+aor+"@"+string(rune('a'+i)), now.Add(time.Hour))
	}
	stop := run(p)
	defer stop()
	eventually(t, "the burst written", func() bool { _, w := st.snapshot(); return w > 0 })
	time.Sleep(3 * p.batch)
	data, writes := st.snapshot()
	if writes != 1 || len(data) != 26 || p.Stored() != 50 {
		t.Fatalf("%d writes, %d aors, %d bindings stored", writes, len(data), p.Stored())
	}
	// An unregistration is written too.
	if _, err := tb.Modify("A", now, func([]Binding) ([]Binding, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the unregistration written", func() bool { d, _ := st.snapshot(); return d["A"] == nil && len(d) == 25 })
	if p.Stored() != 48 {
		t.Fatalf("stored %d after unregistering 2", p.Stored())
	}
}

// A write the store refuses (disk full) stays pending and lands with a
// later flush; expired bindings are swept and their removal written.
func TestRunRetriesAndSweepsExpired(t *testing.T) {
	st := newMemStore()
	st.setFail(errors.New("no space left on device"))
	var log syncBuffer
	tb := New()
	p := NewPersister(tb, st, slog.New(slog.NewTextHandler(&log, nil)))
	p.sweep = 20 * time.Millisecond
	register(t, tb, "101", "sip:101@a", time.Now().Add(time.Hour))
	register(t, tb, "102", "sip:102@a", time.Now().Add(300*time.Millisecond))
	stop := run(p)
	defer stop()
	eventually(t, "the failure logged", func() bool {
		return strings.Contains(log.String(), "saving registrations failed; will retry") && strings.Contains(log.String(), "no space left")
	})
	if p.Stored() != 0 {
		t.Fatalf("stored %d while the store refuses", p.Stored())
	}
	st.setFail(nil)
	eventually(t, "the retry to land", func() bool { d, _ := st.snapshot(); return len(d["101"]) == 1 })
	eventually(t, "the expired binding swept from the store", func() bool { d, _ := st.snapshot(); return d["102"] == nil })
	if tb.Len() != 1 || p.Stored() != 1 {
		t.Fatalf("table %d, stored %d", tb.Len(), p.Stored())
	}
}

// What changed after Run stopped is written by the final Flush.
func TestFlushAfterRun(t *testing.T) {
	st := newMemStore()
	tb := New()
	p := NewPersister(tb, st, nil)
	run(p)() // started and stopped
	register(t, tb, "101", "sip:101@a", time.Now().Add(time.Hour))
	if d, _ := st.snapshot(); len(d) != 0 {
		t.Fatal("written without Run")
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	if d, _ := st.snapshot(); len(d["101"]) != 1 || p.Stored() != 1 {
		t.Fatalf("after flush: %v", d)
	}
	st.setFail(errors.New("disk full"))
	register(t, tb, "102", "sip:102@a", time.Now().Add(time.Hour))
	if err := p.Flush(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("failed flush: %v", err)
	}
}
