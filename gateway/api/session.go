package api

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Account is someone who may log in to the console.
type Account struct {
	Employee   string
	Name       string
	Role       string // employee, manager or admin
	Extensions []string
	Hash       []byte // bcrypt
}

// Sessions keeps console logins: a random id in an HttpOnly, SameSite
// cookie, and a CSRF token every state-changing request must echo in the
// X-CSRF-Token header. Only hashes of the ids are kept.
type Sessions struct {
	// Zone is the office's time zone.
	Zone *time.Location
	ttl  time.Duration
	// people is who may log in; Replace swaps it.
	people atomic.Pointer[people]

	mu sync.Mutex
	m  map[[32]byte]*session
}

// people are the console's accounts as configured. They never change once
// stored.
type people struct {
	accounts map[string]*Account // by employee id and by extension
	// names are every employee's display name by id.
	names      map[string]string
	allVisible bool
	// dummy is compared when a login names nobody, at the cost of the
	// configured hashes, so an unknown login takes as long as a wrong
	// password and logins cannot be enumerated by timing.
	dummy []byte
}

type session struct {
	acct *Account
	csrf string
	seen time.Time
}

// CookieName is the console's session cookie.
const CookieName = "callgate_session"

// NewSessions returns a session store for accounts. With allVisible every
// employee sees everyone's calls (console.visibility = "all").
func NewSessions(accounts []Account, ttl time.Duration, allVisible bool) *Sessions {
	s := &Sessions{ttl: ttl, m: map[[32]byte]*session{}}
	s.people.Store(newPeople(accounts, nil, allVisible, nil))
	return s
}

// newPeople indexes accounts; last is what was in force (its dummy hash
// is kept when the cost has not changed: making one takes a while).
func newPeople(accounts []Account, names map[string]string, allVisible bool, last *people) *people {
	p := &people{accounts: map[string]*Account{}, names: names, allVisible: allVisible}
	cost := 0
	for i := range accounts {
		a := &accounts[i]
		p.accounts[a.Employee] = a
		for _, x := range a.Extensions {
			p.accounts[x] = a
		}
		if c, err := bcrypt.Cost(a.Hash); err == nil {
			cost = max(cost, c) // unknown logins look like the strongest-hashed accounts
		}
	}
	if last != nil && last.dummy != nil {
		if c, _ := bcrypt.Cost(last.dummy); c == cost {
			p.dummy = last.dummy
			return p
		}
	}
	if cost > 0 {
		p.dummy, _ = bcrypt.GenerateFromPassword([]byte(randomToken(18)), cost)
	}
	return p
}

// Name is an employee's display name ("" when not known).
func (s *Sessions) Name(employee string) string { return s.people.Load().names[employee] }

func (s *Sessions) principal(a *Account) Principal {
	switch a.Role {
	case "admin":
		return Principal{Kind: "admin", Name: a.Employee}
	case "manager":
		return Principal{Kind: "manager", Name: a.Employee}
	}
	return Principal{Kind: "employee", Name: a.Employee, All: s.people.Load().allVisible}
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// lookup finds the session of a request's cookie, sliding its expiry.
func (s *Sessions) lookup(r *http.Request) (*session, bool) {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return nil, false
	}
	k := sha256.Sum256([]byte(c.Value))
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[k]
	if ss == nil || now.Sub(ss.seen) > s.ttl {
		delete(s.m, k)
		return nil, false
	}
	ss.seen = now
	return ss, true
}

// unsafe methods change state and need the CSRF token.
func unsafe(method string) bool {
	return method != http.MethodGet && method != http.MethodHead && method != http.MethodOptions
}

// What a request's session cookie came to.
const (
	noSession = iota
	sessionOK
	sessionAnswered // refused and answered (CSRF)
	sessionExpired
)

// sessionAuth authenticates a request by its console cookie; for a
// state-changing request the CSRF token must match.
func (s *Server) sessionAuth(w http.ResponseWriter, r *http.Request) (Principal, int) {
	if s.Sessions == nil {
		return Principal{}, noSession
	}
	if _, err := r.Cookie(CookieName); err != nil {
		return Principal{}, noSession
	}
	ss, ok := s.Sessions.lookup(r)
	if !ok {
		return Principal{}, sessionExpired
	}
	if unsafe(r.Method) && subtle.ConstantTimeCompare([]byte(r.Header.Get("X-CSRF-Token")), []byte(ss.csrf)) != 1 {
		Error(w, http.StatusForbidden, "csrf", "this request needs the X-CSRF-Token of the session")
		return Principal{}, sessionAnswered
	}
	return s.Sessions.principal(ss.acct), sessionOK
}

type sessionInfo struct {
	Employee   string   `json:"employee"`
	Name       string   `json:"name"`
	Role       string   `json:"role"`
	Extensions []string `json:"extensions"`
	CSRF       string   `json:"csrf"`
	// Names are the employees' display names by id, for the console.
	Names map[string]string `json:"names"`
	// Today is the date in the office's time zone (statistics).
	Today string `json:"today"`
	// Desks is how many shared desks there are (the console asks about
	// them only when there are some); DeskPC is the desk whose PC this
	// browser is ("": none).
	Desks  int    `json:"desks"`
	DeskPC string `json:"desk_pc,omitempty"`
}

// infoFor is the session's information as the browser asking sees it.
func (s *Server) infoFor(r *http.Request, ss *session) sessionInfo {
	info := s.Sessions.info(ss)
	if s.Desks != nil {
		info.Desks = len(s.Desks.Desks())
		info.DeskPC = s.deskPC(r)
	}
	return info
}

func (s *Sessions) info(ss *session) sessionInfo {
	a := ss.acct
	zone := s.Zone
	if zone == nil {
		zone = time.UTC
	}
	return sessionInfo{Employee: a.Employee, Name: a.Name, Role: a.Role, Extensions: a.Extensions, CSRF: ss.csrf, Names: s.people.Load().names,
		Today: time.Now().In(zone).Format("2006-01-02")}
}

func (s *Server) sessionRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/session", s.login)
	mux.HandleFunc("GET /api/v1/session", func(w http.ResponseWriter, r *http.Request) {
		ss, ok := s.Sessions.lookup(r)
		if !ok {
			Error(w, http.StatusUnauthorized, "unauthorized", "not logged in")
			return
		}
		writeJSON(w, http.StatusOK, s.infoFor(r, ss))
	})
	mux.Handle("DELETE /api/v1/session", s.auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.leaveDeskAtPC(r, principal(r).Name)
		if c, err := r.Cookie(CookieName); err == nil {
			k := sha256.Sum256([]byte(c.Value))
			if s.Phone != nil {
				s.Phone.RevokePasses(hex.EncodeToString(k[:]))
			}
			if s.PhoneBindings != nil {
				s.PhoneBindings.DropPass(hex.EncodeToString(k[:]), time.Now())
			}
			s.Sessions.mu.Lock()
			delete(s.Sessions.m, k)
			s.Sessions.mu.Unlock()
		}
		http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.Proxies.HTTPS(r)})
		w.WriteHeader(http.StatusNoContent)
	})))
}

// login checks an employee's console password (by id or extension) and
// starts a session. Wrong passwords count against the client and the
// login. Unlike a token, a password can be guessed: a client that has used
// up its failures is refused before its password is checked. A login that
// others failed on still accepts its right password from a client that did
// not fail, so nobody can lock an employee out.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if !jsonBody(r) {
		Error(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send the login as Content-Type: application/json")
		return
	}
	now := time.Now()
	client := addrKey(s.clientAddr(r))
	if d, blocked := s.fails.blocked(now, client); blocked {
		tooMany(w, d)
		return
	}
	var req struct {
		Login    string `json:"login"`
		Password string `json:"password"`
	}
	if answered, err := readJSON(w, r, maxLoginBody, &req); answered {
		return
	} else if err != nil || req.Login == "" || req.Password == "" {
		Error(w, http.StatusBadRequest, "bad_request", `send {"login": "<employee id or extension>", "password": "..."}`)
		return
	}
	who := s.Sessions.people.Load()
	a := who.accounts[req.Login]
	hash := who.dummy
	if a != nil && len(a.Hash) > 0 {
		hash = a.Hash
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(req.Password)) != nil || a == nil || len(a.Hash) == 0 {
		s.refused(w, r, now, []string{client, credKey("login", req.Login)}, "bad_login", func() {
			Error(w, http.StatusUnauthorized, "bad_login", "wrong login or password")
		}, "login", loggable(req.Login))
		return
	}
	id := randomToken(32)
	ss := &session{acct: a, csrf: randomToken(18), seen: now}
	s.Sessions.mu.Lock()
	for k, old := range s.Sessions.m {
		if now.Sub(old.seen) > s.Sessions.ttl {
			delete(s.Sessions.m, k)
		}
	}
	s.Sessions.m[sha256.Sum256([]byte(id))] = ss
	s.Sessions.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.Proxies.HTTPS(r)})
	s.takeDeskAtPC(r, a.Employee)
	writeJSON(w, http.StatusOK, s.infoFor(r, ss))
}
