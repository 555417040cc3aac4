package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"callgate/gateway/calls"

	"golang.org/x/time/rate"
)

// Principal is who a request authenticated as.
type Principal struct {
	Kind string // "admin", "manager", "employee" or "crm"
	Name string // the employee id or CRM name
	// All lets an employee see everyone's calls (console.visibility).
	All bool
}

func (p Principal) String() string {
	if p.Name == "" {
		return p.Kind
	}
	return p.Kind + ":" + p.Name
}

// Involves reports whether the call rang or was answered by the employee.
func involves(rec *calls.Record, employee string) bool {
	if rec.AnsweredBy == employee || slices.Contains(rec.Rung, employee) {
		return true
	}
	for _, l := range rec.Legs {
		if l.Employee == employee {
			return true
		}
	}
	return false
}

// Sees reports whether p may read a call record: admins, managers and CRMs
// see every call, an employee the calls that rang them or that they talked
// on (or every call where visibility is "all").
func (p Principal) Sees(rec *calls.Record) bool {
	return p.Kind != "employee" || p.All || involves(rec, p.Name)
}

// Token is a plain token with its scope, as configured.
type Token struct {
	Scope string // "admin", "employee:<id>", "crm:<name>"
	Token string
}

// Tokens holds API tokens as SHA-256 hashes with their scopes, so plain
// tokens do not stay in memory after configuration loading.
type Tokens struct {
	set atomic.Pointer[tokenSet] // Replace swaps it
}

// tokenSet is the tokens in force. It never changes once stored.
type tokenSet struct {
	hashes [][32]byte
	who    []Principal
}

// NewTokens hashes admin tokens and scoped tokens.
func NewTokens(admin []string, scoped ...Token) *Tokens {
	t := &Tokens{}
	t.Replace(admin, scoped...)
	return t
}

// Lookup returns the principal a token belongs to. Every stored hash is
// compared, so the time taken does not tell which one matched.
func (t *Tokens) Lookup(token string) (Principal, bool) {
	if token == "" {
		return Principal{}, false
	}
	h := sha256.Sum256([]byte(token))
	set := t.set.Load()
	found := -1
	for i := range set.hashes {
		if subtle.ConstantTimeCompare(h[:], set.hashes[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Principal{}, false
	}
	return set.who[found], true
}

// Valid reports whether token is one of ours.
func (t *Tokens) Valid(token string) bool {
	_, ok := t.Lookup(token)
	return ok
}

// failures limits wrong credentials per key (a client address, a
// presented token or login): a burst of 10, then one every 6 s. Only
// failures are limited: a right credential is checked first and always
// accepted, so one client's guessing never locks out the others behind
// the same tunnel. Idle entries are pruned so a scan from many addresses
// cannot grow the table without bound.
type failures struct {
	mu   sync.Mutex
	m    map[string]*failEntry
	last time.Time
}

type failEntry struct {
	lim  *rate.Limiter
	seen time.Time
}

const (
	failBurst = 10
	failEvery = 6 * time.Second
	failMax   = 10000 // keys tracked at most
)

// addrKey and credKey name what failures are counted on. A credential is
// kept only as a hash prefix: the table must not hold guessed secrets.
func addrKey(addr string) string { return "addr " + addr }

func credKey(kind, secret string) string {
	h := sha256.Sum256([]byte(secret))
	return kind + " " + hex.EncodeToString(h[:12])
}

// blocked reports whether any of keys has used up its failures, and when
// to retry.
func (f *failures) blocked(now time.Time, keys ...string) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var wait time.Duration
	for _, k := range keys {
		e := f.m[k]
		if e == nil {
			continue
		}
		if tokens := e.lim.TokensAt(now); tokens < 1 {
			wait = max(wait, time.Duration((1-tokens)*float64(failEvery)))
		}
	}
	return wait, wait > 0
}

// fail counts one failure against each of keys.
func (f *failures) fail(now time.Time, keys ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]*failEntry{}
	}
	if len(f.m) >= failMax || now.Sub(f.last) > time.Minute {
		for k, e := range f.m {
			if now.Sub(e.seen) > failBurst*failEvery {
				delete(f.m, k)
			}
		}
		f.last = now
	}
	for _, k := range keys {
		e := f.m[k]
		if e == nil {
			if len(f.m) >= failMax {
				continue // under a wide scan, stop tracking new keys rather than grow
			}
			e = &failEntry{lim: rate.NewLimiter(rate.Every(failEvery), failBurst)}
			f.m[k] = e
		}
		e.seen = now
		e.lim.AllowN(now, 1)
	}
}

// refused answers a failed attempt: 429 with Retry-After once the client
// or the credential has used up its failures, else the ordinary refusal
// (answer), counted and logged at warning level with the client's address
// (from a trusted proxy's forwarding header), the reason and attrs, never
// the secret tried. Refusals past the limit are not logged, so a client
// hammering away cannot flood the log.
func (s *Server) refused(w http.ResponseWriter, r *http.Request, now time.Time, keys []string, reason string, answer func(), attrs ...any) {
	if d, blocked := s.fails.blocked(now, keys...); blocked {
		tooMany(w, d)
		return
	}
	s.fails.fail(now, keys...)
	s.logger().Warn("http auth failure", append([]any{"client", s.clientAddr(r), "reason", reason, "path", r.URL.Path}, attrs...)...)
	answer()
}

// loggable cuts what a client typed (a login name) to a length fit for a
// log line; slog quotes anything unusual in it.
func loggable(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	return strings.ToValidUTF8(s[:limit], "") + "…"
}

func tooMany(w http.ResponseWriter, d time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(int(d/time.Second)+1))
	Error(w, http.StatusTooManyRequests, "rate_limited", "too many failed attempts from this client; try again later")
}

type principalKey struct{}

func withPrincipal(r *http.Request, p Principal) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
}

// principal is who the request authenticated as (set by auth).
func principal(r *http.Request) Principal {
	p, _ := r.Context().Value(principalKey{}).(Principal)
	return p
}

// auth requires a valid bearer token, rate limits wrong ones per source,
// and passes the principal on in the request context.
func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		next.ServeHTTP(w, withPrincipal(r, p))
	})
}

// authenticate answers 401/429 itself when the request carries no valid
// credential. The credential is checked before any limit: only failures
// are limited.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (Principal, bool) {
	tok := bearer(r)
	if tok == "" {
		switch p, outcome := s.sessionAuth(w, r); outcome {
		case sessionOK:
			return p, true
		case sessionAnswered:
			return Principal{}, false
		case sessionExpired:
			// A console left open past its session (or across a restart)
			// keeps reconnecting: that is not guessing, and session ids
			// cannot be guessed, so it must not lock the client out.
			Error(w, http.StatusUnauthorized, "session_expired", "the console session has ended; log in again")
			return Principal{}, false
		}
	}
	if p, ok := s.Tokens.Lookup(tok); ok {
		return p, true
	}
	keys := []string{addrKey(s.clientAddr(r))}
	if tok != "" {
		keys = append(keys, credKey("token", tok))
	}
	reason := "bad_token"
	if tok == "" {
		reason = "no_token"
	}
	s.refused(w, r, time.Now(), keys, reason, func() {
		w.Header().Set("WWW-Authenticate", `Bearer realm="callgate"`)
		Error(w, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required")
	})
	return Principal{}, false
}

func adminOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if principal(r).Kind != "admin" {
			Error(w, http.StatusForbidden, "forbidden", "this needs an admin token")
			return
		}
		next.ServeHTTP(w, r)
	})
}
