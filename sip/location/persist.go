package location

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Store is where bindings are written behind: a key-value map from an
// address of record to its bindings, encoded (gateway/store's bindings
// bucket). Declared here, where it is used, so that the table does not
// depend on the database.
type Store interface {
	// Each calls fn with every stored aor and its encoded bindings.
	Each(fn func(aor string, value []byte) error) error
	// Apply writes changes at once: for each aor its encoded bindings, or
	// nil to delete it.
	Apply(changes map[string][]byte) error
}

// Persister writes a table's changes to a Store in batches and restores
// them at start-up, so that registration throughput is not bounded by disk
// syncs and a restart (or a crash) does not lose the phones.
type Persister struct {
	table *Table
	store Store
	log   *slog.Logger
	// batch is how long a change waits for more before they are written
	// together: a burst of REGISTERs costs one sync.
	batch time.Duration
	// sweep is how often expired bindings are dropped (and the drop
	// written), even with no REGISTER coming.
	sweep time.Duration

	mu     sync.Mutex
	stored map[string]int // bindings per aor as last written
}

// NewPersister returns a persister of table's bindings to store.
func NewPersister(table *Table, store Store, log *slog.Logger) *Persister {
	if log == nil {
		log = slog.Default()
	}
	return &Persister{table: table, store: store, log: log, batch: 100 * time.Millisecond, sweep: 5 * time.Second, stored: map[string]int{}}
}

// Restore loads the stored bindings into the table, dropping those
// expired at now and any it cannot read, and returns how many it kept.
func (p *Persister) Restore(now time.Time) (int, error) {
	var all []Binding
	p.mu.Lock()
	err := p.store.Each(func(aor string, v []byte) error {
		list, err := Decode(v)
		if err != nil {
			p.log.Warn("unreadable stored registration skipped", "aor", aor, "error", err)
			return nil
		}
		p.stored[aor] = len(list)
		all = append(all, list...)
		return nil
	})
	p.mu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("restore registrations: %w", err)
	}
	return p.table.Restore(all, now), nil
}

// Run writes changes until ctx ends: shortly after a change, and after
// every sweep of expired bindings. A failed write is retried with the next
// change or sweep. Flush writes what is left once Run has returned.
func (p *Persister) Run(ctx context.Context) {
	sweep := time.NewTicker(p.sweep)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sweep.C:
			p.table.Expire(time.Now())
		case <-p.table.Changed():
			select {
			case <-time.After(p.batch):
			case <-ctx.Done():
				return
			}
		}
		if err := p.Flush(); err != nil {
			p.log.Error("saving registrations failed; will retry", "error", err)
		}
	}
}

// Flush writes every change not written yet; on failure they stay
// pending.
func (p *Persister) Flush() error {
	err := p.table.Flush(func(changes map[string][]byte) error {
		if err := p.store.Apply(changes); err != nil {
			return err
		}
		p.mu.Lock()
		for aor, v := range changes {
			if v == nil {
				delete(p.stored, aor)
			} else if list, err := Decode(v); err == nil {
				p.stored[aor] = len(list)
			}
		}
		p.mu.Unlock()
		return nil
	})
	if err != nil {
		return fmt.Errorf("save registrations: %w", err)
	}
	return nil
}

// Stored is the number of bindings the store holds as last written: the
// registrations that would survive a crash now.
func (p *Persister) Stored() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.stored {
		n += c
	}
	return n
}
