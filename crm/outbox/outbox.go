// Package outbox makes CRM delivery durable: every operation is written to
// the database before it is attempted, delivered by one worker per CRM in
// order per call, retried with backoff (honouring Retry-After) while the CRM
// is down or busy, and parked as a dead letter when the CRM says it can never
// succeed. Each item carries an idempotency key that the connector sends to
// the CRM (RetailCRM externalId, Megaplan providerId), so a retry after a lost
// response does not create a second call there. When the database cannot
// be written (disk full), new operations are held in memory and saved, in
// order, as soon as it can: nothing is dropped silently.
package outbox

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bucket is the top-level bucket holding every CRM's outbox.
var Bucket = []byte("crm_outbox")

// DB is the database the outbox lives in (callgate's store).
type DB interface {
	Update(func(*bolt.Tx) error) error
	View(func(*bolt.Tx) error) error
}

// Item is one CRM operation.
type Item struct {
	Seq  uint64 `json:"seq"`
	Key  string `json:"key"`  // idempotency key: call + leg + kind
	Call string `json:"call"` // items of one call are delivered in order
	Kind string `json:"kind"`
	// Body is the connector's payload.
	Body      json.RawMessage `json:"body"`
	Created   time.Time       `json:"created"`
	Attempts  int             `json:"attempts"`
	NextTry   time.Time       `json:"next_try,omitzero"`
	LastError string          `json:"last_error,omitempty"`
}

// Temporary is a failure worth retrying (network error, 429, 503, 5xx).
// After is the CRM's Retry-After, if it gave one.
type Temporary struct {
	Err   error
	After time.Duration
}

func (e *Temporary) Error() string { return e.Err.Error() }
func (e *Temporary) Unwrap() error { return e.Err }

// RetryAfter reads an HTTP Retry-After header (seconds or a date) for
// Temporary.After; 0 when absent or unreadable.
func RetryAfter(v string) time.Duration {
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return time.Until(t)
	}
	return 0
}

// Permanent is a failure retrying cannot fix (validation, no rights).
type Permanent struct{ Err error }

func (e *Permanent) Error() string { return e.Err.Error() }
func (e *Permanent) Unwrap() error { return e.Err }

// Deliverer sends one item to the CRM. An error that is neither *Temporary
// nor *Permanent is treated as temporary.
type Deliverer interface {
	Deliver(ctx context.Context, it *Item) error
}

// Batcher is a Deliverer that can carry several items of one kind in one
// request (RetailCRM takes up to 50 calls per history upload). A backlog
// then drains in fewer requests under the CRM's rate limit.
type Batcher interface {
	// BatchSize is how many items of kind one request may carry (≤ 1: one).
	BatchSize(kind string) int
	// DeliverBatch sends the items in one request; its error is the
	// request's, for every item.
	DeliverBatch(ctx context.Context, items []*Item) error
}

// Options tune retries.
type Options struct {
	MinBackoff, MaxBackoff time.Duration // default 1 s, 5 min
	// OnResult is told of every attempt (metrics).
	OnResult func(it *Item, err error)
	// Log is told when writes to the database fail and recover, and of
	// anything lost (nil: slog.Default()).
	Log *slog.Logger
	// MaxUnsaved bounds the operations held in memory while the database
	// cannot be written (DefaultMaxUnsaved).
	MaxUnsaved int
	// SaveMinBackoff and SaveMaxBackoff space attempts to save them
	// (default 500 ms, 30 s).
	SaveMinBackoff, SaveMaxBackoff time.Duration
}

// meta is what the worker keeps in memory per pending item.
type meta struct {
	seq     uint64
	call    string
	kind    string
	nextTry time.Time
	created time.Time
}

// Outbox is one CRM's queue.
type Outbox struct {
	db   DB
	name []byte
	d    Deliverer
	opt  Options

	mu      sync.Mutex
	pending []*meta // by seq
	dead    int
	lastErr string
	wake    chan struct{}

	// unsaved are operations the database refused, oldest first; they are
	// not delivered before they are stored.
	unsaved      []Item
	saveFails    int
	saveAt       time.Time
	failingSince time.Time
	writeErrs    uint64
	lastWriteErr string
	lost         uint64
	stopped      bool // Run has ended: Put no longer holds what it cannot save
}

// Open loads (or creates) the outbox named name.
func Open(db DB, name string, d Deliverer, opt Options) (*Outbox, error) {
	if opt.MinBackoff <= 0 {
		opt.MinBackoff = time.Second
	}
	if opt.MaxBackoff <= 0 {
		opt.MaxBackoff = 5 * time.Minute
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	if opt.MaxUnsaved <= 0 {
		opt.MaxUnsaved = DefaultMaxUnsaved
	}
	if opt.SaveMinBackoff <= 0 {
		opt.SaveMinBackoff = 500 * time.Millisecond
	}
	if opt.SaveMaxBackoff <= 0 {
		opt.SaveMaxBackoff = 30 * time.Second
	}
	o := &Outbox{db: db, name: []byte(name), d: d, opt: opt, wake: make(chan struct{}, 1)}
	err := db.Update(func(tx *bolt.Tx) error {
		top, err := tx.CreateBucketIfNotExists(Bucket)
		if err != nil {
			return err
		}
		b, err := top.CreateBucketIfNotExists(o.name)
		if err != nil {
			return err
		}
		for _, sub := range []string{"pending", "dead", "keys"} {
			if _, err := b.CreateBucketIfNotExists([]byte(sub)); err != nil {
				return err
			}
		}
		c := b.Bucket([]byte("pending")).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var it Item
			if err := json.Unmarshal(v, &it); err != nil {
				return fmt.Errorf("item %x: %w", k, err)
			}
			o.pending = append(o.pending, &meta{seq: it.Seq, call: it.Call, kind: it.Kind, nextTry: it.NextTry, created: it.Created})
		}
		o.dead = b.Bucket([]byte("dead")).Stats().KeyN
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("outbox %s: %w", name, err)
	}
	return o, nil
}

func seqKey(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func (o *Outbox) bucket(tx *bolt.Tx, sub string) *bolt.Bucket {
	return tx.Bucket(Bucket).Bucket(o.name).Bucket([]byte(sub))
}

func (o *Outbox) kick() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// next picks the first item that is due and not behind an undelivered item
// of the same call, or says how long to wait. Items that travel in batches
// come after the others: a backlog's popups and events go first, which
// also frees their calls' history uploads to go out together.
func (o *Outbox) next(now time.Time) (*meta, time.Duration) {
	b, _ := o.d.(Batcher)
	o.mu.Lock()
	defer o.mu.Unlock()
	wait := time.Duration(-1)
	var blocked map[string]bool
	var later *meta
	for _, m := range o.pending {
		if blocked[m.call] {
			continue
		}
		if blocked == nil {
			blocked = map[string]bool{}
		}
		blocked[m.call] = true
		if m.nextTry.After(now) {
			if d := m.nextTry.Sub(now); wait < 0 || d < wait {
				wait = d
			}
			continue
		}
		if b != nil && b.BatchSize(m.kind) > 1 {
			if later == nil {
				later = m
			}
			continue
		}
		return m, 0
	}
	if later != nil {
		return later, 0
	}
	return nil, wait
}

// Run delivers until ctx ends, saving first what Put had to hold in memory.
func (o *Outbox) Run(ctx context.Context) {
	defer o.stopHeld()
	for {
		held := o.saveHeld(time.Now())
		m, wait := o.next(time.Now())
		if held >= 0 && (wait < 0 || held < wait) {
			wait = held
		}
		if m == nil {
			var t *time.Timer
			var timer <-chan time.Time
			if wait >= 0 {
				t = time.NewTimer(wait)
				timer = t.C
			}
			select {
			case <-ctx.Done():
			case <-o.wake:
			case <-timer:
			}
			if t != nil {
				t.Stop()
			}
			if ctx.Err() != nil {
				return
			}
			continue
		}
		if b, ok := o.d.(Batcher); ok && b.BatchSize(m.kind) > 1 {
			o.attemptBatch(ctx, b, o.batch(m, time.Now(), b.BatchSize(m.kind)))
		} else {
			o.attempt(ctx, m)
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// batch gathers up to size due items of m's kind that are each the first
// pending item of their call, m first.
func (o *Outbox) batch(m *meta, now time.Time, size int) []*meta {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := []*meta{m}
	seen := map[string]bool{}
	for _, p := range o.pending {
		if len(out) == size {
			break
		}
		first := !seen[p.call]
		seen[p.call] = true
		if p != m && first && p.kind == m.kind && !p.nextTry.After(now) {
			out = append(out, p)
		}
	}
	return out
}

// attemptBatch delivers several items in one request. If the CRM refuses
// the request for good, each item is tried alone so that only the bad one
// becomes a dead letter.
func (o *Outbox) attemptBatch(ctx context.Context, b Batcher, ms []*meta) {
	if len(ms) == 1 {
		o.attempt(ctx, ms[0])
		return
	}
	items := make([]*Item, 0, len(ms))
	kept := ms[:0:0]
	for _, m := range ms {
		it, ok := o.load(m)
		if ok {
			items, kept = append(items, it), append(kept, m)
		}
	}
	if len(items) == 0 {
		return
	}
	derr := b.DeliverBatch(ctx, items)
	if ctx.Err() != nil && derr != nil {
		return
	}
	var perm *Permanent
	if errors.As(derr, &perm) {
		for _, m := range kept {
			o.attempt(ctx, m)
		}
		return
	}
	o.settle(kept, items, derr)
}

// load reads a pending item; one that vanished is forgotten.
func (o *Outbox) load(m *meta) (*Item, bool) {
	var it Item
	err := o.db.View(func(tx *bolt.Tx) error {
		v := o.bucket(tx, "pending").Get(seqKey(m.seq))
		if v == nil {
			return errors.New("vanished")
		}
		return json.Unmarshal(v, &it)
	})
	if err != nil {
		o.drop(m)
		return nil, false
	}
	return &it, true
}

func (o *Outbox) attempt(ctx context.Context, m *meta) {
	it, ok := o.load(m)
	if !ok {
		return
	}
	derr := o.d.Deliver(ctx, it)
	if ctx.Err() != nil && derr != nil {
		return // shutting down: the item stays for the next start
	}
	o.settle([]*meta{m}, []*Item{it}, derr)
}

// settle records the outcome of an attempt at ms (one request, so one
// outcome for all): delivered, dead, or due again later, in one write.
func (o *Outbox) settle(ms []*meta, items []*Item, derr error) {
	var perm *Permanent
	dead := errors.As(derr, &perm)
	for _, it := range items {
		if o.opt.OnResult != nil {
			o.opt.OnResult(it, derr)
		}
		if derr == nil {
			continue
		}
		it.LastError = derr.Error()
		if dead {
			continue
		}
		it.Attempts++
		delay := o.backoff(it.Attempts)
		var tmp *Temporary
		if errors.As(derr, &tmp) && tmp.After > delay {
			delay = tmp.After
		}
		it.NextTry = time.Now().Add(delay)
	}
	// A failed write leaves the database as it was: a delivered item is
	// delivered again after a restart (its idempotency key makes that
	// harmless); the failure is counted and shown in Status.
	werr := o.db.Update(func(tx *bolt.Tx) error {
		pending := o.bucket(tx, "pending")
		for i, m := range ms {
			k := seqKey(m.seq)
			var err error
			switch {
			case derr == nil:
				err = pending.Delete(k)
			case dead:
				v, _ := json.Marshal(items[i])
				if err = o.bucket(tx, "dead").Put(k, v); err == nil {
					err = pending.Delete(k)
				}
			default:
				v, _ := json.Marshal(items[i])
				err = pending.Put(k, v)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if werr != nil {
		o.mu.Lock()
		o.writeErrs++
		o.lastWriteErr = werr.Error()
		o.mu.Unlock()
	}
	if derr == nil || dead {
		for _, m := range ms {
			o.drop(m)
		}
	}
	if derr == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lastErr = derr.Error()
	if dead {
		o.dead += len(ms)
		return
	}
	for i, m := range ms {
		m.nextTry = items[i].NextTry
	}
}

// backoff is exponential from MinBackoff with full jitter in its upper half.
func (o *Outbox) backoff(attempts int) time.Duration {
	d := o.opt.MinBackoff << min(attempts-1, 20)
	if d > o.opt.MaxBackoff || d <= 0 {
		d = o.opt.MaxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

func (o *Outbox) drop(m *meta) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, p := range o.pending {
		if p == m {
			o.pending = append(o.pending[:i], o.pending[i+1:]...)
			return
		}
	}
}

// Status describes an outbox.
type Status struct {
	Depth     int           `json:"depth"`
	OldestAge time.Duration `json:"oldest_age_ns"`
	Dead      int           `json:"dead_letters"`
	LastError string        `json:"last_error,omitempty"`
	// Unsaved operations wait in memory for the database (disk full).
	Unsaved        int    `json:"unsaved"`
	WriteErrors    uint64 `json:"write_errors"`
	LastWriteError string `json:"last_write_error,omitempty"`
	Lost           uint64 `json:"lost,omitempty"` // operations dropped: memory queue full, or unsaved at shutdown
}

// Status returns depth, age of the oldest item, dead letters, last error,
// and what waits for the database.
func (o *Outbox) Status() Status {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := Status{Depth: len(o.pending), Dead: o.dead, LastError: o.lastErr,
		Unsaved: len(o.unsaved), WriteErrors: o.writeErrs, LastWriteError: o.lastWriteErr, Lost: o.lost}
	if len(o.pending) > 0 {
		s.OldestAge = time.Since(o.pending[0].created)
	}
	return s
}

// DeadLetters returns the parked items.
func (o *Outbox) DeadLetters() ([]Item, error) {
	var out []Item
	err := o.db.View(func(tx *bolt.Tx) error {
		return o.bucket(tx, "dead").ForEach(func(_, v []byte) error {
			var it Item
			if err := json.Unmarshal(v, &it); err != nil {
				return err
			}
			out = append(out, it)
			return nil
		})
	})
	return out, err
}

// RetryDead puts every dead letter back in the queue (after the cause, e.g.
// missing rights in the CRM, has been fixed) and returns how many.
func (o *Outbox) RetryDead() (int, error) {
	var back []*meta
	err := o.db.Update(func(tx *bolt.Tx) error {
		dead, pending := o.bucket(tx, "dead"), o.bucket(tx, "pending")
		var keys [][]byte
		err := dead.ForEach(func(k, v []byte) error {
			var it Item
			if err := json.Unmarshal(v, &it); err != nil {
				return err
			}
			it.Attempts, it.NextTry = 0, time.Time{}
			nv, _ := json.Marshal(&it)
			if err := pending.Put(k, nv); err != nil {
				return err
			}
			keys = append(keys, append([]byte(nil), k...))
			back = append(back, &meta{seq: it.Seq, call: it.Call, created: it.Created})
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := dead.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("outbox %s: retry dead letters: %w", o.name, err)
	}
	o.mu.Lock()
	o.pending = append(o.pending, back...)
	// Keep seq order: dead letters are older than what was queued since.
	slices.SortFunc(o.pending, func(a, b *meta) int { return cmp.Compare(a.seq, b.seq) })
	o.dead = 0
	o.mu.Unlock()
	o.kick()
	return len(back), nil
}
