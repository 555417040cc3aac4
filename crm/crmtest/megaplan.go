package crmtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MegaplanRef is a link to another entity: {contentType, id}.
type MegaplanRef struct {
	ContentType string `json:"contentType"`
	ID          string `json:"id"`
}

// MegaplanTime is Megaplan's DateTime.
type MegaplanTime struct {
	ContentType string `json:"contentType"`
	Value       string `json:"value"`
}

// MegaplanCall is a CallInfo as the stand-in holds it.
type MegaplanCall struct {
	ContentType string        `json:"contentType"`
	ID          string        `json:"id,omitempty"`
	Type        string        `json:"type,omitempty"`
	State       string        `json:"state,omitempty"`
	FromPhone   string        `json:"fromPhone,omitempty"`
	ToPhone     string        `json:"toPhone,omitempty"`
	FromUser    *MegaplanRef  `json:"fromUser,omitempty"`
	ToUser      *MegaplanRef  `json:"toUser,omitempty"`
	ProviderID  string        `json:"providerId,omitempty"`
	TimeFrom    *MegaplanTime `json:"timeFrom,omitempty"`
	TimeTo      *MegaplanTime `json:"timeTo,omitempty"`
	RecordLinks []string      `json:"recordLinks,omitempty"`
	// States are the states the call went through, in order, and Popups
	// how many widget events it caused (not part of the API).
	States []string `json:"-"`
	Popups int      `json:"-"`
}

// MegaplanContractor is a ContractorHuman.
type MegaplanContractor struct {
	ContentType  string        `json:"contentType"`
	ID           string        `json:"id,omitempty"`
	FirstName    string        `json:"firstName,omitempty"`
	LastName     string        `json:"lastName,omitempty"`
	Description  string        `json:"description,omitempty"`
	Responsibles []MegaplanRef `json:"responsibles,omitempty"`
	ContactInfo  []struct {
		ContentType string `json:"contentType"`
		Type        string `json:"type"`
		Value       string `json:"value"`
	} `json:"contactInfo,omitempty"`
	TimeCreated *MegaplanTime `json:"timeCreated,omitempty"`
	// Company is the ContractorCompany the client works for.
	Company *MegaplanCompany `json:"company,omitempty"`
}

// MegaplanCompany is a reference to a ContractorCompany with its name.
type MegaplanCompany struct {
	ContentType string `json:"contentType"`
	ID          string `json:"id"`
	Name        string `json:"name"`
}

// MegaplanState is a deal's place in its scheme; Type is "active" while
// the deal is open, "positive" or "negative" once it is closed.
type MegaplanState struct {
	ContentType string `json:"contentType"`
	ID          string `json:"id"`
	Name        string `json:"name"`
	Type        string `json:"type"`
}

// MegaplanDeal is a Deal created through the API.
type MegaplanDeal struct {
	ContentType string       `json:"contentType"`
	ID          string       `json:"id,omitempty"`
	Name        string       `json:"name,omitempty"`
	Description string       `json:"description,omitempty"`
	Program     *MegaplanRef `json:"program"`
	Manager     *MegaplanRef `json:"manager,omitempty"`
	Contractor  *MegaplanRef `json:"contractor,omitempty"`
	// Number and State are Megaplan's (the scheme's first, active state
	// for a deal created through the API).
	Number string         `json:"number,omitempty"`
	State  *MegaplanState `json:"state,omitempty"`
}

// Megaplan is a Megaplan API v3 stand-in: password-grant tokens that expire,
// the telephony API (callInfo, callRoute), contractors and deals.
type Megaplan struct {
	*httptest.Server
	Username, Password string

	mu          sync.Mutex
	mode        Mode
	delay       time.Duration
	rps         int
	tokenTTL    time.Duration
	tokens      map[string]time.Time // access token -> expiry
	refresh     map[string]bool
	grants      map[string]int // grant_type -> count
	unauth      int
	calls       []*MegaplanCall
	contractors []*MegaplanContractor
	deals       []*MegaplanDeal
	routes      map[string]string // phone -> responsible employee id
	lookups     int
	// Megaplan checks the rights of the user the token was issued to (the
	// API user), never of an employee named in the body.
	noClients  bool            // the API user may not create clients
	noDeals    map[string]bool // schemes (program ids) the API user may not create deals in
	violations []string
	recent     []time.Time
	nextID     int
	onPopup    func(MegaplanCall)
}

// NewMegaplan starts a stand-in on loopback for one API user. It allows rps
// requests a second (0: no limit) and issues tokens living 48 hours.
func NewMegaplan(username, password string, rps int) *Megaplan {
	m, _ := NewMegaplanAt(username, password, rps, "127.0.0.1:0")
	return m
}

// NewMegaplanAt starts a stand-in listening on addr.
func NewMegaplanAt(username, password string, rps int, addr string) (*Megaplan, error) {
	m := &Megaplan{Username: username, Password: password, rps: rps, tokenTTL: 48 * time.Hour,
		tokens: map[string]time.Time{}, refresh: map[string]bool{}, grants: map[string]int{},
		routes: map[string]string{}, noDeals: map[string]bool{}, nextID: 1000}
	var err error
	if m.Server, err = serveAt(addr, m.serve); err != nil {
		return nil, err
	}
	return m, nil
}

// OnPopup calls f with every call created through POST callInfo (a popup).
func (m *Megaplan) OnPopup(f func(MegaplanCall)) { m.mu.Lock(); m.onPopup = f; m.mu.Unlock() }

// SetMode changes how the stand-in behaves from now on.
func (m *Megaplan) SetMode(mode Mode) { m.mu.Lock(); m.mode = mode; m.mu.Unlock() }

// SetSlow makes every answer wait d.
func (m *Megaplan) SetSlow(d time.Duration) { m.mu.Lock(); m.mode, m.delay = Slow, d; m.mu.Unlock() }

// SetTokenTTL sets the expires_in of tokens issued from now on.
func (m *Megaplan) SetTokenTTL(d time.Duration) { m.mu.Lock(); m.tokenTTL = d; m.mu.Unlock() }

// ExpireTokens makes every access token issued so far invalid, as if its
// 48 hours had passed.
func (m *Megaplan) ExpireTokens() {
	m.mu.Lock()
	for t := range m.tokens {
		m.tokens[t] = time.Time{}
	}
	m.mu.Unlock()
}

// Grants is how many tokens were issued per grant_type.
func (m *Megaplan) Grants() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int{}
	for k, v := range m.grants {
		out[k] = v
	}
	return out
}

// Unauthorized is how many requests came with a missing or expired token.
func (m *Megaplan) Unauthorized() int { m.mu.Lock(); defer m.mu.Unlock(); return m.unauth }

// SetRoute makes employee the responsible one for phone (callRoute).
func (m *Megaplan) SetRoute(phone, employee string) {
	m.mu.Lock()
	m.routes[phoneDigits(phone)] = employee
	m.mu.Unlock()
}

// Lookups is how many callRoute requests arrived.
func (m *Megaplan) Lookups() int { m.mu.Lock(); defer m.mu.Unlock(); return m.lookups }

// DenyClients takes the API user's right to create clients: POST
// contractorHuman answers 403, whoever the body names responsible.
func (m *Megaplan) DenyClients(deny bool) { m.mu.Lock(); m.noClients = deny; m.mu.Unlock() }

// DenyDeals takes the API user's right to create deals in a scheme
// (program id): POST deal in it answers 403, whoever the body names manager.
func (m *Megaplan) DenyDeals(program string) { m.mu.Lock(); m.noDeals[program] = true; m.mu.Unlock() }

// AddContractor creates a client the way a user does in Megaplan's UI.
func (m *Megaplan) AddContractor(name, phone string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := &MegaplanContractor{ContentType: "ContractorHuman", FirstName: name}
	c.ContactInfo = append(c.ContactInfo, struct {
		ContentType string `json:"contentType"`
		Type        string `json:"type"`
		Value       string `json:"value"`
	}{"ContactInfo", "phone", phone})
	m.addContractor(c)
	return c.ID
}

// SetCompany makes a client work for a company (a ContractorCompany named
// name), the way a user fills the field in Megaplan.
func (m *Megaplan) SetCompany(contractorID, name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.contractors {
		if c.ID == contractorID {
			m.nextID++
			c.Company = &MegaplanCompany{ContentType: "ContractorCompany", ID: strconv.Itoa(m.nextID), Name: name}
		}
	}
}

// AddDeal creates a deal of a client the way a manager does; stateType is
// "active" for an open deal, "positive" or "negative" for a closed one.
func (m *Megaplan) AddDeal(contractorID, name, stateType string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextID++
	id := strconv.Itoa(m.nextID)
	m.deals = append(m.deals, &MegaplanDeal{ContentType: "Deal", ID: id, Number: id, Name: name,
		Program:    &MegaplanRef{ContentType: "Program", ID: "1"},
		Contractor: &MegaplanRef{ContentType: "ContractorHuman", ID: contractorID},
		State:      &MegaplanState{ContentType: "ProgramState", ID: "s-" + stateType, Name: stateType, Type: stateType}})
	return id
}

func (m *Megaplan) addContractor(c *MegaplanContractor) {
	m.nextID++
	c.ID = strconv.Itoa(m.nextID)
	// Creation times must differ for "created since" to be exact.
	at := time.Now().UTC()
	if n := len(m.contractors); n > 0 {
		if last, _ := time.Parse(time.RFC3339Nano, m.contractors[n-1].TimeCreated.Value); !at.After(last) {
			at = last.Add(time.Millisecond)
		}
	}
	c.TimeCreated = &MegaplanTime{ContentType: "DateTime", Value: at.Format(time.RFC3339Nano)}
	m.contractors = append(m.contractors, c)
}

// Calls returns copies of the CallInfos received, in creation order.
func (m *Megaplan) Calls() []MegaplanCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]MegaplanCall, len(m.calls))
	for i, c := range m.calls {
		out[i] = *c
		out[i].States = slices.Clone(c.States)
	}
	return out
}

// Contractors returns the contractors, in creation order.
func (m *Megaplan) Contractors() []MegaplanContractor {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]MegaplanContractor, len(m.contractors))
	for i, c := range m.contractors {
		out[i] = *c
	}
	return out
}

// Deals returns the deals created.
func (m *Megaplan) Deals() []MegaplanDeal {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]MegaplanDeal, len(m.deals))
	for i, d := range m.deals {
		out[i] = *d
	}
	return out
}

// Violations lists rate-limit breaches; a test fails if there are any.
func (m *Megaplan) Violations() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.violations)
}

// committed answers a write the stand-in has made, unless it is to drop
// the answer (DropResponse).
func committed(w http.ResponseWriter, mode Mode, data any) {
	if mode == DropResponse {
		hangUp(w)
		return
	}
	megaplanAnswer(w, 200, data)
}

// megaplanAnswer writes Megaplan's envelope.
func megaplanAnswer(w http.ResponseWriter, status int, data any, errs ...string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	list := []map[string]string{}
	for _, e := range errs {
		list = append(list, map[string]string{"message": e})
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"meta": map[string]any{"status": status, "errors": list}, "data": data})
}

func (m *Megaplan) serve(w http.ResponseWriter, req *http.Request) {
	m.mu.Lock()
	mode, delay := m.mode, m.delay
	m.mu.Unlock()
	switch mode {
	case Down:
		hangUp(w)
		return
	case Fail500:
		megaplanAnswer(w, 500, nil, "Internal Server Error")
		return
	case Busy503:
		w.Header().Set("Retry-After", "1")
		megaplanAnswer(w, 503, nil, "Service Unavailable")
		return
	case Slow:
		time.Sleep(delay)
	}
	m.mu.Lock()
	ok := m.limit(time.Now())
	m.mu.Unlock()
	if !ok {
		w.Header().Set("Retry-After", "1")
		megaplanAnswer(w, 429, nil, "Too Many Requests")
		return
	}
	if req.URL.Path == "/api/v3/auth/access_token" {
		m.token(w, req)
		return
	}
	if !m.authorized(req) {
		megaplanAnswer(w, 401, nil, "Unauthorized")
		return
	}
	var query map[string]json.RawMessage
	if req.Method == http.MethodGet && req.URL.RawQuery != "" {
		// GET parameters are one URL-encoded JSON object.
		raw, err := url.QueryUnescape(req.URL.RawQuery)
		if err != nil || json.Unmarshal([]byte(raw), &query) != nil {
			megaplanAnswer(w, 422, nil, "GET parameters must be a URL-encoded JSON object")
			return
		}
	}
	if req.Method == http.MethodPost && !strings.HasPrefix(req.Header.Get("Content-Type"), "application/json") {
		megaplanAnswer(w, 422, nil, "Content-Type application/json expected")
		return
	}
	p := strings.TrimPrefix(req.URL.Path, "/api/v3/")
	switch {
	case req.Method == http.MethodGet && p == "callRoute":
		m.callRoute(w, query)
	case req.Method == http.MethodPost && p == "callInfo":
		m.createCall(w, req, mode)
	case p == "callInfo/provider" && req.Method == http.MethodGet:
		m.findCall(w, query)
	case p == "callInfo/provider" && req.Method == http.MethodPost:
		m.updateCall(w, req, mode)
	case p == "callInfo/history" && req.Method == http.MethodPost:
		m.history(w, req, mode)
	case req.Method == http.MethodPost && strings.HasPrefix(p, "callInfo/") && strings.HasSuffix(p, "/setContractor"):
		m.setContractor(w, req, strings.TrimSuffix(strings.TrimPrefix(p, "callInfo/"), "/setContractor"))
	case req.Method == http.MethodGet && p == "contractor":
		m.listContractors(w, query)
	case req.Method == http.MethodPost && p == "contractorHuman":
		m.createContractor(w, req, mode)
	case req.Method == http.MethodGet && p == "deal":
		m.listDeals(w, query)
	case req.Method == http.MethodPost && p == "deal":
		m.createDeal(w, req, mode)
	default:
		megaplanAnswer(w, 404, nil, "Not Found")
	}
}

// limit records the request over a sliding second against the configured
// rate, noting any breach.
func (m *Megaplan) limit(now time.Time) bool {
	if m.rps <= 0 {
		return true
	}
	for len(m.recent) > 0 && now.Sub(m.recent[0]) >= time.Second {
		m.recent = m.recent[1:]
	}
	m.recent = append(m.recent, now)
	if len(m.recent) > m.rps {
		m.violations = append(m.violations, fmt.Sprintf("%d requests within a second at %s", len(m.recent), now.Format(time.StampMilli)))
		return false
	}
	return true
}

func (m *Megaplan) authorized(req *http.Request) bool {
	tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	m.mu.Lock()
	defer m.mu.Unlock()
	exp, known := m.tokens[tok]
	if !ok || !known || time.Now().After(exp) {
		m.unauth++
		return false
	}
	return true
}

// token is auth/access_token: password and refresh_token grants, form
// encoded (multipart or urlencoded), answered the OAuth 2 way.
func (m *Megaplan) token(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		megaplanAnswer(w, 405, nil, "Method Not Allowed")
		return
	}
	if strings.HasPrefix(req.Header.Get("Content-Type"), "multipart/form-data") {
		_ = req.ParseMultipartForm(1 << 16)
	} else {
		_ = req.ParseForm()
	}
	fail := func(code, why string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": why})
	}
	grant := req.PostFormValue("grant_type")
	m.mu.Lock()
	defer m.mu.Unlock()
	switch grant {
	case "password":
		if req.PostFormValue("username") != m.Username || req.PostFormValue("password") != m.Password {
			fail("invalid_grant", "Invalid username and password combination")
			return
		}
	case "refresh_token":
		if !m.refresh[req.PostFormValue("refresh_token")] {
			fail("invalid_grant", "Invalid refresh token")
			return
		}
		delete(m.refresh, req.PostFormValue("refresh_token"))
	default:
		fail("unsupported_grant_type", "grant_type must be password or refresh_token")
		return
	}
	m.grants[grant]++
	m.nextID++
	access, refresh := fmt.Sprintf("at-%d-%d", m.nextID, time.Now().UnixNano()), fmt.Sprintf("rt-%d-%d", m.nextID, time.Now().UnixNano())
	m.tokens[access] = time.Now().Add(m.tokenTTL)
	m.refresh[refresh] = true
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": access, "expires_in": int(m.tokenTTL.Seconds()),
		"token_type": "bearer", "scope": nil, "refresh_token": refresh})
}
