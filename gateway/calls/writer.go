package calls

import (
	"cmp"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// DefaultMaxPending is how many calls' records a Writer holds in memory
// while the database cannot be written: at a few KiB each, weeks of an
// office's calls in well under a few hundred MiB, so a full disk that is
// noticed within days loses nothing.
const DefaultMaxPending = 50000

// WriterStatus says whether call records are waiting for the database.
type WriterStatus struct {
	Pending   int       `json:"pending"`      // calls whose latest record is not in the database yet
	Errors    uint64    `json:"write_errors"` // failed write attempts since start
	Lost      uint64    `json:"lost"`         // records dropped: memory queue full, or still unwritten at shutdown
	LastError string    `json:"last_error,omitempty"`
	Since     time.Time `json:"since,omitzero"` // when writes started failing; zero while they succeed
}

// Writer saves call records so that a failing disk loses none: a record
// that cannot be written is kept in memory (only the latest version per
// call, so a call costs one slot however many events it has) and retried
// with backoff until the database takes it. Records are written in one
// transaction per batch, so a backlog lands at once when space returns.
type Writer struct {
	put func([]Record) error
	log *slog.Logger
	// MaxPending bounds the calls held in memory (DefaultMaxPending).
	MaxPending int
	// MinBackoff and MaxBackoff space the retries (default 500 ms, 30 s).
	MinBackoff, MaxBackoff time.Duration

	mu      sync.Mutex
	pending map[string]Record
	order   []string // ids in the order they were first queued
	fails   int
	st      WriterStatus
}

// NewWriter writes through put (Store.PutAll).
func NewWriter(put func([]Record) error, log *slog.Logger) *Writer {
	return &Writer{put: put, log: log, pending: map[string]Record{}}
}

// Run writes the records received until in is closed, then makes a last
// attempt and logs what could not be saved.
func (w *Writer) Run(in <-chan Record) {
	var retry <-chan time.Time
	for {
		select {
		case r, ok := <-in:
			if !ok {
				w.shutdown()
				return
			}
			w.add(r)
			// Take what else is queued: one transaction for a burst.
			for more := true; more; {
				select {
				case r, ok := <-in:
					if !ok {
						w.shutdown()
						return
					}
					w.add(r)
				default:
					more = false
				}
			}
			if retry == nil {
				retry = w.flush()
			}
		case <-retry:
			retry = w.flush()
		}
	}
}

func (w *Writer) add(r Record) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.pending[r.ID]; !ok {
		max := w.MaxPending
		if max <= 0 {
			max = DefaultMaxPending
		}
		if len(w.order) >= max {
			w.st.Lost++
			w.log.Error("call record lost: too many records wait for the database (is the disk full?)",
				"call_id", r.ID, "started", r.Started, "waiting", len(w.order))
			return
		}
		w.order = append(w.order, r.ID)
	}
	w.pending[r.ID] = r
}

// flush writes every pending record; on failure it returns when to retry.
func (w *Writer) flush() <-chan time.Time {
	w.mu.Lock()
	batch := make([]Record, 0, len(w.order))
	for _, id := range w.order {
		batch = append(batch, w.pending[id])
	}
	w.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := w.put(batch)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.fails++
		w.st.Errors++
		w.st.LastError = err.Error()
		if w.st.Since.IsZero() {
			w.st.Since = time.Now()
			w.log.Error("call records not saved: kept in memory and retried until the database can be written",
				"calls", len(batch), "first_call_id", batch[0].ID, "error", err)
		}
		return time.After(w.backoff())
	}
	// Only the writer's goroutine adds, so nothing changed since the copy.
	clear(w.pending)
	w.order = w.order[:0]
	if !w.st.Since.IsZero() {
		w.log.Info("call records kept in memory saved: the database can be written again",
			"calls", len(batch), "failed_attempts", w.fails, "waited", time.Since(w.st.Since).Round(time.Second).String())
	}
	w.fails = 0
	w.st.Since = time.Time{}
	return nil
}

func (w *Writer) backoff() time.Duration {
	lo, hi := w.MinBackoff, w.MaxBackoff
	if lo <= 0 {
		lo = 500 * time.Millisecond
	}
	if hi <= 0 {
		hi = 30 * time.Second
	}
	d := lo << min(w.fails-1, 16)
	if d > hi || d <= 0 {
		d = hi
	}
	return d
}

// shutdown makes a few last attempts, then logs every record it drops.
func (w *Writer) shutdown() {
	for i := 0; i < 3; i++ {
		if w.flush() == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range w.order {
		w.st.Lost++
		w.log.Error("call record lost at shutdown: the database could not be written", "call_id", id,
			"result", w.pending[id].Result, "error", w.st.LastError)
	}
}

// Status reports what waits for the database.
func (w *Writer) Status() WriterStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.st
	s.Pending = len(w.order)
	return s
}

// Pending returns the records not yet in the database, oldest first, so
// history can show them meanwhile.
func (w *Writer) Pending() []Record {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Record, 0, len(w.order))
	for _, id := range w.order {
		out = append(out, w.pending[id])
	}
	return out
}

// ShowUnsaved makes Get and List include the records w holds in memory, so
// the history shows calls while the database cannot be written.
func (s *Store) ShowUnsaved(w *Writer) { s.unsaved = w.Pending }

func (s *Store) unsavedByID(id string) *Record {
	if s.unsaved == nil {
		return nil
	}
	for _, r := range s.unsaved() {
		if r.ID == id {
			return &r
		}
	}
	return nil
}

// withUnsaved merges the held records that pass f into a page read from
// the database (newest first, at most f.Limit); a held version replaces a
// stored one, being newer.
func (s *Store) withUnsaved(page []Record, f Filter) []Record {
	if s.unsaved == nil {
		return page
	}
	held := s.unsaved()
	if len(held) == 0 {
		return page
	}
	ids := map[string]bool{}
	var out []Record
	for _, r := range held {
		ids[r.ID] = true
		if (f.From.IsZero() || !r.Started.Before(f.From)) && f.keep(&r) {
			out = append(out, r)
		}
	}
	for _, r := range page {
		if !ids[r.ID] {
			out = append(out, r)
		}
	}
	slices.SortStableFunc(out, func(a, b Record) int { return cmp.Compare(b.Started.UnixNano(), a.Started.UnixNano()) })
	if len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out
}
