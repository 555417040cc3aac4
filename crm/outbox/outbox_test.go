package outbox

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openDB(t *testing.T, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// crm is a fake CRM: it records deliveries and fails as told.
type crm struct {
	mu        sync.Mutex
	got       []string // keys in delivery order
	attempts  map[string]int
	failUntil map[string]int // key -> fail this many attempts
	after     time.Duration  // Retry-After on failures
	permanent map[string]bool
	times     map[string][]time.Time
}

func newCRM() *crm {
	return &crm{attempts: map[string]int{}, failUntil: map[string]int{}, permanent: map[string]bool{}, times: map[string][]time.Time{}}
}

func (c *crm) Deliver(_ context.Context, it *Item) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.attempts[it.Key]++
	c.times[it.Key] = append(c.times[it.Key], time.Now())
	if c.permanent[it.Key] {
		return &Permanent{Err: errors.New("Validation error: phone is invalid")}
	}
	if c.attempts[it.Key] <= c.failUntil[it.Key] {
		return &Temporary{Err: errors.New("503 Service Unavailable"), After: c.after}
	}
	c.got = append(c.got, it.Key)
	return nil
}

func (c *crm) delivered() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.got...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func items(calls, per int) []Item {
	var out []Item
	for n := range per {
		for c := range calls {
			out = append(out, Item{Key: fmt.Sprintf("call%d-%d", c, n), Call: fmt.Sprintf("call%d", c), Kind: "event", Body: []byte(`{}`)})
		}
	}
	return out
}

// Items of one call arrive in order even when one of them has to be
// retried; other calls are not held up; nothing arrives twice.
func TestOrderPerCallRetriesAndNoDuplicates(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "o.db"))
	defer db.Close()
	c := newCRM()
	c.failUntil["call1-0"] = 3
	o, err := Open(db, "retailcrm", c, Options{MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Put(items(3, 4)...); err != nil {
		t.Fatal(err)
	}
	if err := o.Put(items(3, 4)...); err != nil { // the same operations again
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go o.Run(ctx)
	waitFor(t, "12 deliveries", func() bool { return len(c.delivered()) == 12 && o.Status().Depth == 0 })
	got := c.delivered()
	pos := map[string]int{}
	for i, k := range got {
		if _, dup := pos[k]; dup {
			t.Fatalf("%s delivered twice", k)
		}
		pos[k] = i
	}
	for call := range 3 {
		for n := 1; n < 4; n++ {
			if pos[fmt.Sprintf("call%d-%d", call, n)] < pos[fmt.Sprintf("call%d-%d", call, n-1)] {
				t.Fatalf("call%d out of order: %v", call, got)
			}
		}
	}
	if pos["call0-3"] > pos["call1-0"] {
		t.Fatalf("call0 waited for call1's retries: %v", got)
	}
	if s := o.Status(); s.Depth != 0 || s.LastError == "" {
		t.Fatalf("status %+v", s)
	}
}

// Retry-After from the CRM is honoured over a shorter backoff.
func TestRetryAfterHonoured(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "o.db"))
	defer db.Close()
	c := newCRM()
	c.failUntil["a"] = 1
	c.after = 400 * time.Millisecond
	o, _ := Open(db, "megaplan", c, Options{MinBackoff: 10 * time.Millisecond})
	_ = o.Put(Item{Key: "a", Call: "x"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go o.Run(ctx)
	waitFor(t, "delivery", func() bool { return len(c.delivered()) == 1 })
	c.mu.Lock()
	ts := c.times["a"]
	c.mu.Unlock()
	if gap := ts[1].Sub(ts[0]); gap < 400*time.Millisecond {
		t.Fatalf("retried after %s, Retry-After was 400ms", gap)
	}
}

// Permanent failures become dead letters with the CRM's text; they can be
// retried once the cause is fixed.
func TestDeadLettersAndRetry(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "o.db"))
	defer db.Close()
	c := newCRM()
	c.permanent["bad"] = true
	o, _ := Open(db, "retailcrm", c, Options{MinBackoff: 10 * time.Millisecond})
	_ = o.Put(Item{Key: "bad", Call: "x"}, Item{Key: "good", Call: "y"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go o.Run(ctx)
	waitFor(t, "good delivered, bad parked", func() bool { return len(c.delivered()) == 1 && o.Status().Dead == 1 })
	dead, err := o.DeadLetters()
	if err != nil || len(dead) != 1 || dead[0].Key != "bad" || dead[0].LastError != "Validation error: phone is invalid" {
		t.Fatalf("dead letters %+v %v", dead, err)
	}
	c.mu.Lock()
	c.permanent["bad"] = false
	c.mu.Unlock()
	if n, err := o.RetryDead(); err != nil || n != 1 {
		t.Fatalf("retry: %d %v", n, err)
	}
	waitFor(t, "bad delivered after retry", func() bool { return len(c.delivered()) == 2 && o.Status().Depth == 0 })
	if s := o.Status(); s.Dead != 0 || s.Depth != 0 {
		t.Fatalf("status %+v", s)
	}
}

// The queue survives a restart (a new process opening the same file):
// undelivered items go out, delivered ones are not repeated, and keys seen
// before are still refused.
func TestSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "o.db")
	db := openDB(t, path)
	c := newCRM()
	c.failUntil["call0-0"] = 1000 // the CRM is down for call0
	o, _ := Open(db, "retailcrm", c, Options{MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	_ = o.Put(items(2, 3)...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Run(ctx); close(done) }()
	waitFor(t, "call1 delivered", func() bool { return len(c.delivered()) == 3 })
	cancel()
	<-done
	db.Close()

	db = openDB(t, path)
	defer db.Close()
	c.mu.Lock()
	c.failUntil["call0-0"] = 0
	c.mu.Unlock()
	o, err := Open(db, "retailcrm", c, Options{MinBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if s := o.Status(); s.Depth != 3 {
		t.Fatalf("after restart depth %d, want 3", s.Depth)
	}
	_ = o.Put(items(2, 3)...) // replayed by a restarted producer: ignored
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go o.Run(ctx)
	waitFor(t, "all delivered", func() bool { return len(c.delivered()) == 6 })
	time.Sleep(50 * time.Millisecond)
	if n := len(c.delivered()); n != 6 {
		t.Fatalf("%d deliveries, want 6: %v", n, c.delivered())
	}
}

// BenchmarkThroughput is items per second to a CRM that accepts at once:
// one item a request, and history uploads 50 a request.
func BenchmarkThroughput(b *testing.B) {
	b.Run("single", func(b *testing.B) { throughput(b, newCRM(), "event") })
	b.Run("batch50", func(b *testing.B) { throughput(b, &batcher{crm: newCRM()}, "upload") })
}

func throughput(b *testing.B, d interface {
	Deliverer
	delivered() []string
}, kind string) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "o.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	o, _ := Open(db, "bench", d, Options{})
	batch := make([]Item, 0, 100)
	for i := range b.N {
		// One item a call: a call's items never share a request.
		batch = append(batch, Item{Key: fmt.Sprint("k", i), Call: fmt.Sprint("c", i), Kind: kind, Body: []byte(`{"type":"in"}`)})
		if len(batch) == cap(batch) {
			_ = o.Put(batch...)
			batch = batch[:0]
		}
	}
	_ = o.Put(batch...)
	b.ResetTimer()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go o.Run(ctx)
	for len(d.delivered()) < b.N {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
}

// batcher is the fake CRM taking "upload" items up to 50 a request; a
// request with a bad item is refused whole, as RetailCRM refuses it.
type batcher struct {
	*crm
	requests [][]string
}

func (b *batcher) BatchSize(kind string) int {
	if kind == "upload" {
		return 50
	}
	return 1
}

func (b *batcher) DeliverBatch(_ context.Context, items []*Item) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var keys []string
	for _, it := range items {
		if b.permanent[it.Key] {
			return &Permanent{Err: errors.New("Validation error in calls")}
		}
		keys = append(keys, it.Key)
	}
	b.requests = append(b.requests, keys)
	b.got = append(b.got, keys...)
	return nil
}

// A backlog of calls (an event and an upload each) goes out with the
// uploads 50 a request, never ahead of their call's event; a bad item in a
// batch dies alone.
func TestBacklogIsBatched(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "o.db"))
	defer db.Close()
	b := &batcher{crm: newCRM()}
	b.permanent["c7-upload"] = true
	ob, err := Open(db, "retailcrm", b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var items []Item
	for i := range 120 {
		id := fmt.Sprint("c", i)
		items = append(items, Item{Key: id + "-event", Call: id, Kind: "event"}, Item{Key: id + "-upload", Call: id, Kind: "upload"})
	}
	if err := ob.Put(items...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ob.Run(ctx)
	waitFor(t, "backlog delivered", func() bool { return ob.Status().Depth == 0 })
	got := b.delivered()
	if len(got) != 239 || ob.Status().Dead != 1 {
		t.Fatalf("%d delivered, %d dead", len(got), ob.Status().Dead)
	}
	pos := map[string]int{}
	for i, k := range got {
		pos[k] = i
	}
	for i := range 120 {
		if e, u := fmt.Sprint("c", i, "-event"), fmt.Sprint("c", i, "-upload"); i != 7 && pos[e] > pos[u] {
			t.Fatalf("call c%d: the upload went ahead of the event", i)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	big := 0
	for _, r := range b.requests {
		if len(r) > 50 {
			t.Fatalf("a request carried %d items", len(r))
		}
		if len(r) > 1 {
			big++
		}
	}
	// 120 uploads: one batch of 50 refused for c7 and tried one by one,
	// the other 70 in two requests.
	if big != 2 || len(b.requests) != 2 {
		t.Fatalf("%d requests for 119 uploads: %v", len(b.requests), b.requests)
	}
}
