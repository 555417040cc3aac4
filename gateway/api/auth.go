package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	hashes [][32]byte
	who    []Principal
}

// NewTokens hashes admin tokens and scoped tokens.
func NewTokens(admin []string, scoped ...Token) *Tokens {
	t := &Tokens{}
	for _, p := range admin {
		t.hashes = append(t.hashes, sha256.Sum256([]byte(p)))
		t.who = append(t.who, Principal{Kind: "admin"})
	}
	for _, s := range scoped {
		kind, name, _ := strings.Cut(s.Scope, ":")
		t.hashes = append(t.hashes, sha256.Sum256([]byte(s.Token)))
		t.who = append(t.who, Principal{Kind: kind, Name: name})
	}
	return t
}

// Lookup returns the principal a token belongs to. Every stored hash is
// compared, so the time taken does not tell which one matched.
func (t *Tokens) Lookup(token string) (Principal, bool) {
	if token == "" {
		return Principal{}, false
	}
	h := sha256.Sum256([]byte(token))
	found := -1
	for i := range t.hashes {
		if subtle.ConstantTimeCompare(h[:], t.hashes[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Principal{}, false
	}
	return t.who[found], true
}

// Valid reports whether token is one of ours.
func (t *Tokens) Valid(token string) bool {
	_, ok := t.Lookup(token)
	return ok
}

// failures limits wrong credentials per source address: a burst of 10,
// then one every 6 s. Idle entries are pruned so a scan from many
// addresses cannot grow the table without bound.
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
	failMax   = 10000 // addresses tracked at most
)

func sourceIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// blocked reports whether ip has used up its failures, and when to retry.
func (f *failures) blocked(ip string, now time.Time) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.m[ip]
	if e == nil {
		return 0, false
	}
	if tokens := e.lim.TokensAt(now); tokens < 1 {
		return time.Duration((1 - tokens) * float64(failEvery)), true
	}
	return 0, false
}

// fail counts one failure from ip.
func (f *failures) fail(ip string, now time.Time) {
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
		if len(f.m) >= failMax {
			return // under a wide scan, stop tracking new addresses rather than grow
		}
	}
	e := f.m[ip]
	if e == nil {
		e = &failEntry{lim: rate.NewLimiter(rate.Every(failEvery), failBurst)}
		f.m[ip] = e
	}
	e.seen = now
	e.lim.AllowN(now, 1)
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
// token.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (Principal, bool) {
	now := time.Now()
	ip := sourceIP(r)
	if d, blocked := s.fails.blocked(ip, now); blocked {
		w.Header().Set("Retry-After", strconv.Itoa(int(d/time.Second)+1))
		Error(w, http.StatusTooManyRequests, "rate_limited", "too many failed attempts from this address; try again later")
		return Principal{}, false
	}
	if bearer(r) == "" {
		switch p, outcome := s.sessionAuth(w, r); outcome {
		case sessionOK:
			return p, true
		case sessionAnswered:
			return Principal{}, false
		case sessionExpired:
			// A console left open past its session (or across a restart)
			// keeps reconnecting: that is not guessing, and session ids
			// cannot be guessed, so it must not lock the address out.
			Error(w, http.StatusUnauthorized, "session_expired", "the console session has ended; log in again")
			return Principal{}, false
		}
	}
	p, ok := s.Tokens.Lookup(bearer(r))
	if !ok {
		s.fails.fail(ip, now)
		w.Header().Set("WWW-Authenticate", `Bearer realm="callgate"`)
		Error(w, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required")
		return Principal{}, false
	}
	return p, true
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
