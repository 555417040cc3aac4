package crmlink

import (
	"context"
	"errors"
	"sync"
	"time"
)

// responsible answers "who is this client's manager?" for smart routing
// without ever holding a call longer than the budget: answers are cached
// (a stale one is used while it is refreshed in the background), a lookup
// that misses the budget goes on in the background to fill the cache, and
// while the CRM has lately been slow or failing calls do not wait at all.
type responsible struct {
	lookup func(ctx context.Context, phone string) (string, error)
	budget time.Duration
	ttl    time.Duration

	mu       sync.Mutex
	cache    map[string]respEntry
	inflight map[string]chan struct{}
	troubled time.Time // when the CRM last failed or missed the budget
}

type respEntry struct {
	employee string
	at       time.Time
}

// troubleWindow is how long a slow or failing CRM is not waited for.
const troubleWindow = 30 * time.Second

func newResponsible(lookup func(context.Context, string) (string, error), budget, ttl time.Duration) *responsible {
	return &responsible{lookup: lookup, budget: budget, ttl: ttl, cache: map[string]respEntry{}, inflight: map[string]chan struct{}{}}
}

// Who returns the responsible employee for phone, or "".
func (r *responsible) Who(phone string) string {
	now := time.Now()
	r.mu.Lock()
	e, cached := r.cache[phone]
	if cached && now.Sub(e.at) < r.ttl {
		r.mu.Unlock()
		return e.employee
	}
	troubled := now.Sub(r.troubled) < troubleWindow
	done := r.fetch(phone)
	r.mu.Unlock()
	if cached {
		return e.employee // stale, refreshing
	}
	if troubled {
		return ""
	}
	t := time.NewTimer(r.budget)
	defer t.Stop()
	select {
	case <-done:
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.cache[phone].employee
	case <-t.C:
		r.mu.Lock()
		r.troubled = time.Now()
		r.mu.Unlock()
		return ""
	}
}

// fetch starts a background lookup unless one is running (r.mu held).
func (r *responsible) fetch(phone string) chan struct{} {
	if ch, ok := r.inflight[phone]; ok {
		return ch
	}
	ch := make(chan struct{})
	r.inflight[phone] = ch
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		emp, err := r.lookup(ctx, phone)
		cancel()
		r.mu.Lock()
		if err != nil {
			r.troubled = time.Now()
		} else {
			if len(r.cache) > 50000 {
				for k, v := range r.cache {
					if time.Since(v.at) > r.ttl {
						delete(r.cache, k)
					}
				}
			}
			r.cache[phone] = respEntry{employee: emp, at: time.Now()}
		}
		delete(r.inflight, phone)
		r.mu.Unlock()
		close(ch)
	}()
	return ch
}

// responsibleLookup asks every CRM at once; the first in configuration order
// that names a mapped, not excluded employee wins.
func (l *Link) responsibleLookup(ctx context.Context, phone string) (string, error) {
	type answer struct {
		employee string
		err      error
	}
	answers := make([]chan answer, len(l.crms))
	for i, c := range l.crms {
		answers[i] = make(chan answer, 1)
		go func() {
			emp, err := c.responsible(ctx, phone)
			l.mu.RLock()
			if c.exclude[emp] {
				emp = ""
			}
			l.mu.RUnlock()
			answers[i] <- answer{emp, err}
		}()
	}
	var errs []error
	for _, ch := range answers {
		a := <-ch
		if a.employee != "" {
			return a.employee, nil
		}
		if a.err != nil {
			errs = append(errs, a.err)
		}
	}
	if len(errs) == len(l.crms) {
		return "", errors.Join(errs...)
	}
	return "", nil
}
