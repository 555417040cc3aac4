// Package directory knows the office's people: employees, their
// extensions, the digest secrets their phones register with, and the
// shared desks whose extension follows whoever logged in there for their
// shift.
package directory

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"callgate/gateway/config"
	"callgate/sip/digest"
)

// Employee is one person with one or two extensions, and the desk they
// sit at for this shift, if any.
type Employee struct {
	ID         string
	Name       string
	Extensions []string
}

type secret struct {
	md5, sha256 string
}

// Desk is a shared phone and who holds it now ("" when nobody does).
type Desk struct {
	Extension string `json:"extension"`
	Name      string `json:"name"`
	Employee  string `json:"employee"`
}

// roster is what the configuration says about the people and desks. It
// never changes once built: a reload builds a new one and swaps it in, so
// readers (every REGISTER, every call) take no lock.
type roster struct {
	employees map[string]*Employee
	byExt     map[string]*Employee
	secrets   map[string]secret // extension -> HA1s
	pins      map[string]string // shift PIN -> employee
	deskNames map[string]string // desk extension -> name
	desks     []string          // desk extensions in configuration order
	realm     string            // the digest realm the HA1s are for
}

func (r *roster) isDesk(ext string) bool { _, ok := r.deskNames[ext]; return ok }

// Directory is safe for concurrent use. Employees and secrets come from
// the configuration (New, Replace); who sits at which desk changes with
// shifts.
type Directory struct {
	r atomic.Pointer[roster]

	mu     sync.RWMutex      // held to change holder, and to swap r
	holder map[string]string // desk -> employee
	// OnShift is told of every change (to keep it across restarts).
	OnShift func(desk, employee string)

	passes passes // the browser phones' short-lived passwords
}

// New builds the directory from a validated configuration. Only HA1 values
// are kept, never the passwords.
func New(cfg *config.Config) *Directory {
	d := &Directory{holder: map[string]string{}}
	d.r.Store(newRoster(cfg))
	return d
}

func newRoster(cfg *config.Config) *roster {
	r := &roster{employees: map[string]*Employee{}, byExt: map[string]*Employee{}, secrets: map[string]secret{},
		pins: map[string]string{}, deskNames: map[string]string{}, realm: cfg.SIP.Realm}
	ha1 := func(ext, password string) secret {
		return secret{md5: digest.HA1(digest.MD5, ext, cfg.SIP.Realm, password), sha256: digest.HA1(digest.SHA256, ext, cfg.SIP.Realm, password)}
	}
	for _, e := range cfg.Employees {
		emp := &Employee{ID: e.ID, Name: e.Name, Extensions: append([]string(nil), e.Extensions...)}
		r.employees[e.ID] = emp
		for _, x := range e.Extensions {
			r.byExt[x] = emp
			r.secrets[x] = ha1(x, e.SIPPassword)
		}
		if e.ShiftPIN != "" {
			r.pins[e.ShiftPIN] = e.ID
		}
	}
	for _, k := range cfg.Desks {
		r.desks = append(r.desks, k.Extension)
		r.deskNames[k.Extension] = k.Name
		r.secrets[k.Extension] = ha1(k.Extension, k.SIPPassword)
	}
	return r
}

// Replace takes a new configuration's employees, extensions, secrets,
// PINs and desks at once: readers see either the old or the new roster,
// never a mix. Who holds a desk stays where both the desk and the employee
// remain; a desk or employee that is gone frees the desk (OnShift is
// told). It returns the extensions (employees' and desks') that no longer
// exist, whose phones are no longer welcome.
func (d *Directory) Replace(cfg *config.Config) (gone []string) {
	next := newRoster(cfg)
	d.mu.Lock()
	old := d.r.Swap(next)
	var freed []string
	for desk, emp := range d.holder {
		if _, ok := next.employees[emp]; !ok || !next.isDesk(desk) {
			delete(d.holder, desk)
			freed = append(freed, desk)
		}
	}
	d.mu.Unlock()
	for ext := range old.secrets {
		if _, ok := next.secrets[ext]; !ok {
			gone = append(gone, ext)
		}
	}
	slices.Sort(gone)
	slices.Sort(freed)
	if d.OnShift != nil {
		for _, desk := range freed {
			d.OnShift(desk, "")
		}
	}
	return gone
}

// HA1 implements digest.Credentials for registering phones.
func (d *Directory) HA1(user string, alg digest.Algorithm) (string, bool) {
	s, ok := d.r.Load().secrets[user]
	if !ok {
		return "", false
	}
	if alg == digest.SHA256 {
		return s.sha256, true
	}
	return s.md5, true
}

// Employee returns an employee by id, with the desk they hold now among
// their extensions.
func (d *Directory) Employee(id string) (*Employee, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.employeeLocked(d.r.Load(), id)
}

// employeeLocked is Employee with d.mu held (for reading).
func (d *Directory) employeeLocked(r *roster, id string) (*Employee, bool) {
	e, ok := r.employees[id]
	if !ok {
		return nil, false
	}
	var desk string
	for _, x := range r.desks {
		if d.holder[x] == id {
			desk = x
		}
	}
	if desk == "" {
		return e, true
	}
	c := *e
	c.Extensions = append(slices.Clone(e.Extensions), desk)
	return &c, true
}

// ByExtension returns whose extension this is: for a desk, who holds it.
func (d *Directory) ByExtension(ext string) (*Employee, bool) {
	if e, ok := d.r.Load().byExt[ext]; ok {
		return e, true
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	id := d.holder[ext]
	if id == "" {
		return nil, false
	}
	return d.employeeLocked(d.r.Load(), id)
}

// IsDesk reports whether ext is a shared desk.
func (d *Directory) IsDesk(ext string) bool { return d.r.Load().isDesk(ext) }

// ByPIN returns the employee whose shift PIN this is.
func (d *Directory) ByPIN(pin string) (string, bool) {
	id, ok := d.r.Load().pins[pin]
	return id, ok
}

// Desks lists the desks and who holds them.
func (d *Directory) Desks() []Desk {
	d.mu.RLock()
	defer d.mu.RUnlock()
	r := d.r.Load()
	out := make([]Desk, 0, len(r.desks))
	for _, x := range r.desks {
		out = append(out, Desk{Extension: x, Name: r.deskNames[x], Employee: d.holder[x]})
	}
	return out
}

// Errors of shift changes.
var (
	ErrNoDesk     = errors.New("no such desk")
	ErrNoEmployee = errors.New("no such employee")
)

// SitAt gives desk to employee for their shift: whoever held it loses it,
// and the employee leaves any other desk.
func (d *Directory) SitAt(desk, employee string) error {
	d.mu.Lock()
	r := d.r.Load() // under d.mu: Replace cannot drop the desk or employee meanwhile
	if !r.isDesk(desk) {
		d.mu.Unlock()
		return ErrNoDesk
	}
	if _, ok := r.employees[employee]; !ok {
		d.mu.Unlock()
		return ErrNoEmployee
	}
	var changed []string
	for _, x := range r.desks {
		if x != desk && d.holder[x] == employee {
			delete(d.holder, x)
			changed = append(changed, x)
		}
	}
	d.holder[desk] = employee
	changed = append(changed, desk)
	d.mu.Unlock()
	d.notify(changed)
	return nil
}

// Leave frees desk (if employee is not "", only when they hold it).
func (d *Directory) Leave(desk, employee string) error {
	d.mu.Lock()
	if !d.r.Load().isDesk(desk) {
		d.mu.Unlock()
		return ErrNoDesk
	}
	if employee != "" && d.holder[desk] != employee {
		d.mu.Unlock()
		return nil
	}
	delete(d.holder, desk)
	d.mu.Unlock()
	d.notify([]string{desk})
	return nil
}

// Restore puts back who held a desk before a restart.
func (d *Directory) Restore(desk, employee string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.r.Load()
	if _, ok := r.employees[employee]; !ok || !r.isDesk(desk) {
		return
	}
	d.holder[desk] = employee
}

func (d *Directory) notify(desks []string) {
	if d.OnShift == nil {
		return
	}
	d.mu.RLock()
	now := map[string]string{}
	for _, x := range desks {
		now[x] = d.holder[x]
	}
	d.mu.RUnlock()
	for _, x := range desks {
		d.OnShift(x, now[x])
	}
}
