// Package directory knows the office's people: employees, their
// extensions, and the digest secrets their phones register with.
package directory

import (
	"callgate/gateway/config"
	"callgate/sip/digest"
)

// Employee is one person with one or two extensions.
type Employee struct {
	ID         string
	Name       string
	Extensions []string
}

type secret struct {
	md5, sha256 string
}

// Directory is read-only after New and safe for concurrent use.
type Directory struct {
	employees map[string]*Employee
	byExt     map[string]*Employee
	secrets   map[string]secret // extension -> HA1s
}

// New builds the directory from a validated configuration. Only HA1 values
// are kept, never the passwords.
func New(cfg *config.Config) *Directory {
	d := &Directory{employees: map[string]*Employee{}, byExt: map[string]*Employee{}, secrets: map[string]secret{}}
	for _, e := range cfg.Employees {
		emp := &Employee{ID: e.ID, Name: e.Name, Extensions: append([]string(nil), e.Extensions...)}
		d.employees[e.ID] = emp
		for _, x := range e.Extensions {
			d.byExt[x] = emp
			d.secrets[x] = secret{
				md5:    digest.HA1(digest.MD5, x, cfg.SIP.Realm, e.SIPPassword),
				sha256: digest.HA1(digest.SHA256, x, cfg.SIP.Realm, e.SIPPassword),
			}
		}
	}
	return d
}

// HA1 implements digest.Secrets: the digest user is the extension.
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

// Employee returns an employee by id.
func (d *Directory) Employee(id string) (*Employee, bool) {
	e, ok := d.employees[id]
	return e, ok
}

// ByExtension returns the employee an extension belongs to.
func (d *Directory) ByExtension(ext string) (*Employee, bool) {
	e, ok := d.byExt[ext]
	return e, ok
}
