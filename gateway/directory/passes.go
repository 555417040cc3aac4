package directory

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"callgate/sip/digest"
)

// A console session's browser phone registers with a password minted for
// that session instead of the extension's SIP password, which therefore
// never reaches a web page. A pass is good until it expires or its session
// ends, for the one extension (line) of the employee it was minted for.

// maxPassesPerExtension bounds the passes one extension holds (one per
// console tab or device logged in); the oldest goes first.
const maxPassesPerExtension = 8

// ErrNoLine means a browser phone asked for an extension that is not one
// of the employee's lines.
var ErrNoLine = errors.New("not one of the employee's lines")

// Pass is a browser phone's SIP credential.
type Pass struct {
	Extension string
	Password  string
	Realm     string
	Expires   time.Time
	// Lines are all the employee's extensions, the choice a console offers.
	Lines []string
}

type pass struct {
	session     string
	md5, sha256 string
	expires     time.Time
}

type passes struct {
	mu    sync.Mutex
	byExt map[string][]pass
}

// MintPass makes a password for employee's browser phone on extension
// (one of the employee's lines; "" is the first) that is good for ttl, or
// until RevokePasses(session). A session's earlier passes stay good until
// they expire: two tabs of one login each hold their own, and each renews
// it before it runs out. The newest maxPassesPerExtension of an extension
// are kept.
func (d *Directory) MintPass(employee, extension, session string, ttl time.Duration, now time.Time) (Pass, error) {
	r := d.r.Load()
	e, ok := r.employees[employee]
	if !ok || len(e.Extensions) == 0 {
		return Pass{}, fmt.Errorf("employee %q has no extension to register a browser phone on", employee)
	}
	ext := e.Extensions[0]
	if extension != "" {
		if !slices.Contains(e.Extensions, extension) {
			return Pass{}, fmt.Errorf("browser phone on %q: %w (%v)", extension, ErrNoLine, e.Extensions)
		}
		ext = extension
	}
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return Pass{}, fmt.Errorf("browser phone pass: %w", err)
	}
	pw := base64.RawURLEncoding.EncodeToString(b)
	p := pass{session: session, md5: digest.HA1(digest.MD5, ext, r.realm, pw), sha256: digest.HA1(digest.SHA256, ext, r.realm, pw), expires: now.Add(ttl)}
	d.passes.mu.Lock()
	defer d.passes.mu.Unlock()
	if d.passes.byExt == nil {
		d.passes.byExt = map[string][]pass{}
	}
	kept := []pass{p}
	for _, o := range d.passes.byExt[ext] {
		if o.expires.After(now) && len(kept) < maxPassesPerExtension {
			kept = append(kept, o)
		}
	}
	d.passes.byExt[ext] = kept
	return Pass{Extension: ext, Password: pw, Realm: r.realm, Expires: p.expires, Lines: slices.Clone(e.Extensions)}, nil
}

// RevokePasses ends every pass of a console session (its logout).
func (d *Directory) RevokePasses(session string) {
	d.passes.mu.Lock()
	defer d.passes.mu.Unlock()
	for ext, list := range d.passes.byExt {
		kept := list[:0]
		for _, p := range list {
			if p.session != session {
				kept = append(kept, p)
			}
		}
		if len(kept) == 0 {
			delete(d.passes.byExt, ext)
		} else {
			d.passes.byExt[ext] = kept
		}
	}
}

// AlternateHA1s implements digest.Alternates: the HA1s of user's passes in
// force, each tagged with the session it was minted for. An extension gone
// from the configuration has none.
func (d *Directory) AlternateHA1s(user string, alg digest.Algorithm) []digest.Alternate {
	if _, ok := d.r.Load().byExt[user]; !ok {
		return nil
	}
	now := time.Now()
	d.passes.mu.Lock()
	defer d.passes.mu.Unlock()
	var out []digest.Alternate
	for _, p := range d.passes.byExt[user] {
		if !p.expires.After(now) {
			continue
		}
		ha1 := p.md5
		if alg == digest.SHA256 {
			ha1 = p.sha256
		}
		out = append(out, digest.Alternate{HA1: ha1, Tag: p.session})
	}
	return out
}
