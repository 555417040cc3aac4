// Package presence keeps each employee's status as their CRM sets it:
// free, or away (busy, at dinner, on a break). An employee who is away is
// not rung by inbound calls; the call goes to whoever else the route
// names. The statuses are RetailCRM's user statuses (changeUserStatusUrl).
package presence

import (
	"fmt"
	"sync"
)

// The statuses an employee can have; Free is the default.
const (
	Free   = "free"
	Busy   = "busy"
	Dinner = "dinner"
	Break  = "break"
)

// Valid reports whether s is one of the statuses.
func Valid(s string) bool {
	switch s {
	case Free, Busy, Dinner, Break:
		return true
	}
	return false
}

// Store keeps the statuses across restarts (store.Store has these).
type Store interface {
	State(name string) ([]byte, error)
	SetState(name string, value []byte) error
}

// Presence holds the statuses. The zero value is ready: everyone free,
// nothing kept across restarts (see Keep).
type Presence struct {
	mu   sync.RWMutex
	m    map[string]string // employee -> status other than free
	keep Store
}

func stateName(employee string) string { return "presence." + employee }

// Keep makes every status set from now on saved in st, and reads back the
// saved statuses of employees: someone at dinner when callgate restarted is
// still at dinner after it.
func (p *Presence) Keep(st Store, employees []string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keep = st
	for _, e := range employees {
		v, err := st.State(stateName(e))
		if err != nil {
			return fmt.Errorf("presence of %s: %w", e, err)
		}
		if s := string(v); Valid(s) && s != Free {
			if p.m == nil {
				p.m = map[string]string{}
			}
			p.m[e] = s
		}
	}
	return nil
}

// Set records an employee's status.
func (p *Presence) Set(employee, status string) error {
	if !Valid(status) {
		return fmt.Errorf("presence of %s: unknown status %q (free, busy, dinner or break)", employee, status)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.keep != nil {
		if err := p.keep.SetState(stateName(employee), []byte(status)); err != nil {
			return fmt.Errorf("presence of %s: %w", employee, err)
		}
	}
	if status == Free {
		delete(p.m, employee)
		return nil
	}
	if p.m == nil {
		p.m = map[string]string{}
	}
	p.m[employee] = status
	return nil
}

// Status is an employee's status.
func (p *Presence) Status(employee string) string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if s, ok := p.m[employee]; ok {
		return s
	}
	return Free
}

// Away reports whether inbound calls should pass the employee by.
func (p *Presence) Away(employee string) bool { return p.Status(employee) != Free }

// Told is the statuses as an employee sets their own in the console: kept
// for routing, then told to the CRMs that keep statuses (Tell).
type Told struct {
	*Presence
	Tell func(employee, status string) error
}

// Set records the status and tells the CRMs.
func (t *Told) Set(employee, status string) error {
	if err := t.Presence.Set(employee, status); err != nil {
		return err
	}
	return t.Tell(employee, status)
}
