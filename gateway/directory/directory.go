// Package directory knows the office's people: employees, their
// extensions, the digest secrets their phones register with, and the
// shared desks whose extension follows whoever logged in there for their
// shift.
package directory

import (
	"errors"
	"slices"
	"sync"

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

// Directory is safe for concurrent use. Employees and secrets are fixed
// at New; who sits at which desk changes with shifts.
type Directory struct {
	employees map[string]*Employee
	byExt     map[string]*Employee
	secrets   map[string]secret // extension -> HA1s
	pins      map[string]string // shift PIN -> employee
	deskNames map[string]string // desk extension -> name
	desks     []string          // desk extensions in configuration order

	mu     sync.RWMutex
	holder map[string]string // desk -> employee
	// OnShift is told of every change (to keep it across restarts).
	OnShift func(desk, employee string)
}

// New builds the directory from a validated configuration. Only HA1 values
// are kept, never the passwords.
func New(cfg *config.Config) *Directory {
	d := &Directory{employees: map[string]*Employee{}, byExt: map[string]*Employee{}, secrets: map[string]secret{},
		pins: map[string]string{}, deskNames: map[string]string{}, holder: map[string]string{}}
	ha1 := func(ext, password string) secret {
		return secret{md5: digest.HA1(digest.MD5, ext, cfg.SIP.Realm, password), sha256: digest.HA1(digest.SHA256, ext, cfg.SIP.Realm, password)}
	}
	for _, e := range cfg.Employees {
		emp := &Employee{ID: e.ID, Name: e.Name, Extensions: append([]string(nil), e.Extensions...)}
		d.employees[e.ID] = emp
		for _, x := range e.Extensions {
			d.byExt[x] = emp
			d.secrets[x] = ha1(x, e.SIPPassword)
		}
		if e.ShiftPIN != "" {
			d.pins[e.ShiftPIN] = e.ID
		}
	}
	for _, k := range cfg.Desks {
		d.desks = append(d.desks, k.Extension)
		d.deskNames[k.Extension] = k.Name
		d.secrets[k.Extension] = ha1(k.Extension, k.SIPPassword)
	}
	return d
}

// HA1 implements digest.Credentials for registering phones.
func (d *Directory) HA1(user string, alg digest.Algorithm) (string, bool) {
	s, ok := d.secrets[user]
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
	e, ok := d.employees[id]
	if !ok {
		return nil, false
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	var desk string
	for _, x := range d.desks {
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
	if e, ok := d.byExt[ext]; ok {
		return e, true
	}
	d.mu.RLock()
	id := d.holder[ext]
	d.mu.RUnlock()
	if id == "" {
		return nil, false
	}
	return d.Employee(id)
}

// IsDesk reports whether ext is a shared desk.
func (d *Directory) IsDesk(ext string) bool { _, ok := d.deskNames[ext]; return ok }

// ByPIN returns the employee whose shift PIN this is.
func (d *Directory) ByPIN(pin string) (string, bool) {
	id, ok := d.pins[pin]
	return id, ok
}

// Desks lists the desks and who holds them.
func (d *Directory) Desks() []Desk {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]Desk, 0, len(d.desks))
	for _, x := range d.desks {
		out = append(out, Desk{Extension: x, Name: d.deskNames[x], Employee: d.holder[x]})
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
	if !d.IsDesk(desk) {
		return ErrNoDesk
	}
	if _, ok := d.employees[employee]; !ok {
		return ErrNoEmployee
	}
	d.mu.Lock()
	var changed []string
	for _, x := range d.desks {
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
	if !d.IsDesk(desk) {
		return ErrNoDesk
	}
	d.mu.Lock()
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
	if !d.IsDesk(desk) {
		return
	}
	if _, ok := d.employees[employee]; !ok {
		return
	}
	d.mu.Lock()
	d.holder[desk] = employee
	d.mu.Unlock()
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
