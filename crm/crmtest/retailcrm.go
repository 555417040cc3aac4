package crmtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"
)

// RetailEvent is a telephony/call/event as received.
type RetailEvent struct {
	Phone          string   `json:"phone"`
	Type           string   `json:"type"`
	Codes          []string `json:"codes"`
	UserIDs        []int    `json:"userIds"`
	Site           string   `json:"site"`
	HangupStatus   string   `json:"hangupStatus"`
	ExternalPhone  string   `json:"externalPhone"`
	CallExternalID string   `json:"callExternalId"`
	WebAnalytics   *struct {
		Campaign struct {
			Name string `json:"name"`
			Code string `json:"code"`
		} `json:"campaign"`
		QueryString string `json:"queryString"`
	} `json:"webAnalyticsData"`
}

// RetailCall is a telephony/calls/upload entry as received.
type RetailCall struct {
	Date            string `json:"date"`
	Type            string `json:"type"`
	Phone           string `json:"phone"`
	Code            string `json:"code"`
	UserID          int    `json:"userId"`
	Result          string `json:"result"`
	Duration        int    `json:"duration"`
	DurationWaiting int    `json:"durationWaiting"`
	ExternalID      string `json:"externalId"`
	RecordURL       string `json:"recordUrl"`
	ExternalPhone   string `json:"externalPhone"`
	Site            string `json:"site"`
	ClientID        string `json:"clientId"`
	// Source is where the caller came from (SerializedSource).
	Source *RetailSource `json:"source"`
}

// RetailSource is RetailCRM's SerializedSource: the UTM marks a call or
// an order came with.
type RetailSource struct {
	Source   string `json:"source"`
	Medium   string `json:"medium"`
	Campaign string `json:"campaign"`
	Keyword  string `json:"keyword"`
	Content  string `json:"content"`
}

// RetailCRM is a RetailCRM API v5 stand-in.
type RetailCRM struct {
	*httptest.Server
	APIKey string

	mu         sync.Mutex
	mode       Mode
	delay      time.Duration // for Slow
	events     []RetailEvent
	calls      []RetailCall // first upload of each externalId, in order
	duplicates int
	uploads    int // upload requests
	onEvent    func(RetailEvent)
	modules    map[string]json.RawMessage
	edits      int
	violations []string
	managers   map[string]int // phone -> responsible user id
	lookups    int
	customers  []RetailCustomer
	orders     []RetailOrder
	corporates []RetailCorporate
	statuses   map[int]string // user -> status (users/{id}/status)
	denyCreate bool
	recent     map[string][]time.Time // rate-limit class -> request times
}

// NewRetailCRM starts a stand-in on loopback accepting apiKey.
func NewRetailCRM(apiKey string) *RetailCRM {
	r, _ := NewRetailCRMAt(apiKey, "127.0.0.1:0")
	return r
}

// NewRetailCRMAt starts a stand-in listening on addr (a load tool needs a
// known address to put in callgate's configuration).
func NewRetailCRMAt(apiKey, addr string) (*RetailCRM, error) {
	r := &RetailCRM{APIKey: apiKey, modules: map[string]json.RawMessage{}, recent: map[string][]time.Time{}, managers: map[string]int{}}
	var err error
	if r.Server, err = serveAt(addr, r.serve); err != nil {
		return nil, err
	}
	return r, nil
}

// OnEvent calls f with every call event accepted, as it arrives.
func (r *RetailCRM) OnEvent(f func(RetailEvent)) {
	r.mu.Lock()
	r.onEvent = f
	r.mu.Unlock()
}

// SetMode changes how the stand-in behaves from now on.
func (r *RetailCRM) SetMode(m Mode) {
	r.mu.Lock()
	r.mode = m
	r.mu.Unlock()
}

// SetManager makes userID the responsible manager of the client with phone
// (digits, no "+").
func (r *RetailCRM) SetManager(phone string, userID int) {
	r.mu.Lock()
	r.managers[phone] = userID
	r.mu.Unlock()
}

// RetailCustomer is a customer created through the API.
type RetailCustomer struct {
	ID         int    `json:"id,omitempty"` // given by the stand-in
	ExternalID string `json:"externalId"`
	FirstName  string `json:"firstName"`
	LastName   string `json:"lastName,omitempty"`
	Phones     []struct {
		Number string `json:"number"`
	} `json:"phones"`
	ManagerID int    `json:"managerId"`
	Site      string `json:"-"`
}

// RetailOrder is an order created through the API.
type RetailOrder struct {
	ID         int    `json:"id,omitempty"`     // given by the stand-in
	Number     string `json:"number,omitempty"` // given by the stand-in
	ExternalID string `json:"externalId"`
	Customer   struct {
		ID         int    `json:"id,omitempty"`
		ExternalID string `json:"externalId"`
	} `json:"customer"`
	ManagerID int           `json:"managerId"`
	Phone     string        `json:"phone"`
	Site      string        `json:"site,omitempty"`
	Source    *RetailSource `json:"source,omitempty"`
}

// AddOrder creates an order of a customer the way a manager does.
func (r *RetailCRM) AddOrder(customerID int, number, site string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := RetailOrder{ID: 100 + len(r.orders), Number: number, ExternalID: fmt.Sprint("ui-order-", len(r.orders)+1), Site: site}
	o.Customer.ID = customerID
	r.orders = append(r.orders, o)
	return o.ID
}

// AddCustomer creates a customer the way a manager does in RetailCRM.
func (r *RetailCRM) AddCustomer(firstName, lastName, phone string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := RetailCustomer{ID: len(r.customers) + 1, ExternalID: fmt.Sprint("ui-", len(r.customers)+1), FirstName: firstName, LastName: lastName}
	c.Phones = append(c.Phones, struct {
		Number string `json:"number"`
	}{phone})
	r.customers = append(r.customers, c)
	return c.ID
}

// Customers and Orders return what was created.
func (r *RetailCRM) Customers() []RetailCustomer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.customers)
}

// Orders returns the orders created.
func (r *RetailCRM) Orders() []RetailOrder {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.orders)
}

// DenyCreate makes customer and order creation answer "Access denied." (a
// key without the rights), as RetailCRM does.
func (r *RetailCRM) DenyCreate(deny bool) {
	r.mu.Lock()
	r.denyCreate = deny
	r.mu.Unlock()
}

// Lookups is how many telephony/manager requests arrived.
func (r *RetailCRM) Lookups() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lookups
}

// SetSlow makes every answer wait d (mode Slow).
func (r *RetailCRM) SetSlow(d time.Duration) {
	r.mu.Lock()
	r.mode, r.delay = Slow, d
	r.mu.Unlock()
}

// Events returns the call events received.
func (r *RetailCRM) Events() []RetailEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// Calls returns the history entries received (each externalId once).
func (r *RetailCRM) Calls() []RetailCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// Duplicates is how many uploads repeated a known externalId.
func (r *RetailCRM) Duplicates() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.duplicates
}

// Uploads is how many telephony/calls/upload requests were accepted.
func (r *RetailCRM) Uploads() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.uploads
}

// Module returns the integration module registered under code.
func (r *RetailCRM) Module(code string) (json.RawMessage, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.modules[code], r.edits
}

// Violations lists rate-limit breaches; a test fails if there are any.
func (r *RetailCRM) Violations() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.violations)
}

func retailError(w http.ResponseWriter, status int, msg string, errs any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	body := map[string]any{"success": false, "errorMsg": msg}
	if errs != nil {
		body["errors"] = errs
	}
	_ = json.NewEncoder(w).Encode(body)
}

func retailOK(w http.ResponseWriter, body map[string]any) { retailStatus(w, http.StatusOK, body) }

func retailStatus(w http.ResponseWriter, status int, body map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	body["success"] = true
	_ = json.NewEncoder(w).Encode(body)
}

// limit records the request against RetailCRM's limits (10/s per key, 40/s
// for telephony) over a sliding second, noting any breach.
func (r *RetailCRM) limit(path string, now time.Time) bool {
	class, max := "general", 10
	if strings.HasPrefix(path, "/api/v5/telephony/") {
		class, max = "telephony", 40
	}
	times := r.recent[class]
	for len(times) > 0 && now.Sub(times[0]) >= time.Second {
		times = times[1:]
	}
	times = append(times, now)
	r.recent[class] = times
	if len(times) > max {
		r.violations = append(r.violations, fmt.Sprintf("%s: %d requests within a second at %s", class, len(times), now.Format(time.StampMilli)))
		return false
	}
	return true
}

// decodeStrict decodes a JSON form field, refusing unknown fields the way
// RetailCRM refuses them ("Errors in the entity format").
func decodeStrict(v string, into any) error {
	dec := json.NewDecoder(bytes.NewReader([]byte(v)))
	dec.DisallowUnknownFields()
	return dec.Decode(into)
}

func (r *RetailCRM) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	mode, delay := r.mode, r.delay
	r.mu.Unlock()
	switch mode {
	case Down:
		hangUp(w)
		return
	case Fail500:
		retailError(w, 500, "Internal error", nil)
		return
	case Busy503:
		w.Header().Set("Retry-After", "1")
		retailError(w, 503, "Service temporarily unavailable", nil)
		return
	case Slow:
		time.Sleep(delay)
	}
	if req.URL.Query().Has("apiKey") {
		// Works with the real API, but puts the key in URLs and logs.
		retailError(w, 400, "the API key must not be sent in the URL (stand-in policy)", nil)
		return
	}
	switch key := req.Header.Get("X-API-KEY"); {
	case key == "":
		retailError(w, 403, `"apiKey" is missing.`, nil)
		return
	case key != r.APIKey:
		retailError(w, 403, `Wrong "apiKey" value.`, nil)
		return
	}
	r.mu.Lock()
	ok := r.limit(req.URL.Path, time.Now())
	r.mu.Unlock()
	if !ok {
		retailError(w, 503, "Rate limit exceeded", nil)
		return
	}
	if req.Method == http.MethodGet && req.URL.Path == "/api/v5/telephony/manager" {
		r.manager(w, req)
		return
	}
	if req.Method == http.MethodGet && req.URL.Path == "/api/v5/orders" {
		r.findOrders(w, req)
		return
	}
	if req.Method == http.MethodGet && req.URL.Path == "/api/v5/customers" {
		r.findCustomers(w, req)
		return
	}
	if req.Method == http.MethodGet && req.URL.Path == "/api/v5/customers-corporate" {
		r.findCorporates(w, req)
		return
	}
	if req.Method != http.MethodPost {
		retailError(w, 405, "Method not allowed", nil)
		return
	}
	if ct := req.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		retailError(w, 400, "Errors in the entity format", map[string]string{"content-type": "form-encoded body expected, got " + ct})
		return
	}
	if err := req.ParseForm(); err != nil {
		retailError(w, 400, "Errors in the entity format", nil)
		return
	}
	path := req.URL.Path
	switch {
	case path == "/api/v5/telephony/call/event":
		r.callEvent(w, req)
	case path == "/api/v5/telephony/calls/upload":
		r.upload(w, req, mode)
	case path == "/api/v5/customers/create":
		r.createCustomer(w, req)
	case path == "/api/v5/orders/create":
		r.createOrder(w, req)
	case strings.HasPrefix(path, "/api/v5/users/") && strings.HasSuffix(path, "/status"):
		r.userStatus(w, req, strings.TrimSuffix(strings.TrimPrefix(path, "/api/v5/users/"), "/status"))
	case strings.HasPrefix(path, "/api/v5/integration-modules/") && strings.HasSuffix(path, "/edit"):
		r.moduleEdit(w, req, strings.TrimSuffix(strings.TrimPrefix(path, "/api/v5/integration-modules/"), "/edit"))
	default:
		retailError(w, 404, "API method not found", nil)
	}
}

func (r *RetailCRM) callEvent(w http.ResponseWriter, req *http.Request) {
	v := req.PostForm.Get("event")
	if v == "" {
		retailError(w, 400, "Parameter 'event' is missing", nil)
		return
	}
	var e RetailEvent
	if err := decodeStrict(v, &e); err != nil {
		retailError(w, 400, "Errors in the entity format", map[string]string{"event": err.Error()})
		return
	}
	errs := map[string]string{}
	if e.Phone == "" {
		errs["phone"] = "This value should not be blank."
	}
	if e.Type != "in" && e.Type != "out" && e.Type != "hangup" {
		errs["type"] = "The value you selected is not a valid choice."
	}
	if len(e.Codes) == 0 && len(e.UserIDs) == 0 {
		errs["codes"] = "codes or userIds are required"
	}
	if e.Type == "hangup" && !slices.Contains([]string{"answered", "busy", "cancel", "failed", "no answered"}, e.HangupStatus) {
		errs["hangupStatus"] = "The value you selected is not a valid choice."
	}
	if len(errs) > 0 {
		retailError(w, 400, "Validation error", errs)
		return
	}
	r.mu.Lock()
	r.events = append(r.events, e)
	hook := r.onEvent
	r.mu.Unlock()
	if hook != nil {
		hook(e)
	}
	retailOK(w, map[string]any{"notExistCodes": []string{}, "notExistUsers": []int{}})
}

func (r *RetailCRM) upload(w http.ResponseWriter, req *http.Request, mode Mode) {
	v := req.PostForm.Get("calls")
	if v == "" {
		retailError(w, 400, "Parameter 'calls' is missing", nil)
		return
	}
	var calls []RetailCall
	if err := decodeStrict(v, &calls); err != nil {
		retailError(w, 400, "Errors in the entity format", map[string]string{"calls": err.Error()})
		return
	}
	if len(calls) == 0 || len(calls) > 50 {
		retailError(w, 400, "Validation error", map[string]string{"calls": "from 1 to 50 calls per request"})
		return
	}
	for i, c := range calls {
		errs := map[string]string{}
		if _, err := time.Parse("2006-01-02 15:04:05", c.Date); err != nil {
			errs[fmt.Sprintf("calls[%d].date", i)] = "Y-m-d H:i:s expected"
		}
		if c.Type != "in" && c.Type != "out" {
			errs[fmt.Sprintf("calls[%d].type", i)] = "The value you selected is not a valid choice."
		}
		if !slices.Contains([]string{"answered", "no answer", "busy", "failed", "not allowed", "unknown"}, c.Result) {
			errs[fmt.Sprintf("calls[%d].result", i)] = "The value you selected is not a valid choice."
		}
		if c.Phone == "" || c.ExternalID == "" {
			errs[fmt.Sprintf("calls[%d]", i)] = "phone and externalId are required"
		}
		if len(errs) > 0 {
			retailError(w, 400, "Validation error", errs)
			return
		}
	}
	var dups []string
	r.mu.Lock()
	r.uploads++
	for _, c := range calls {
		if slices.ContainsFunc(r.calls, func(k RetailCall) bool { return k.ExternalID == c.ExternalID }) {
			dups = append(dups, c.ExternalID)
			r.duplicates++
			continue
		}
		r.calls = append(r.calls, c)
	}
	r.mu.Unlock()
	if mode == DropResponse {
		hangUp(w)
		return
	}
	retailOK(w, map[string]any{"processedCallsCount": len(calls) - len(dups), "duplicateCalls": dups})
}

func (r *RetailCRM) moduleEdit(w http.ResponseWriter, req *http.Request, code string) {
	v := req.PostForm.Get("integrationModule")
	if v == "" {
		retailError(w, 400, "Parameter 'integrationModule' is missing", nil)
		return
	}
	var m struct {
		Code            string `json:"code"`
		IntegrationCode string `json:"integrationCode"`
		Active          bool   `json:"active"`
		Name            string `json:"name"`
		Logo            string `json:"logo"`
		ClientID        string `json:"clientId"`
		BaseURL         string `json:"baseUrl"`
		AccountURL      string `json:"accountUrl"`
		Integrations    struct {
			Telephony struct {
				MakeCallURL          string `json:"makeCallUrl"`
				ChangeUserStatusURL  string `json:"changeUserStatusUrl"`
				AllowEdit            bool   `json:"allowEdit"`
				InputEventSupported  bool   `json:"inputEventSupported"`
				OutputEventSupported bool   `json:"outputEventSupported"`
				HangupEventSupported bool   `json:"hangupEventSupported"`
				AdditionalCodes      []struct {
					UserID int    `json:"userId"`
					Code   string `json:"code"`
				} `json:"additionalCodes"`
				ExternalPhones []struct {
					SiteCode      string `json:"siteCode"`
					ExternalPhone string `json:"externalPhone"`
				} `json:"externalPhones"`
			} `json:"telephony"`
		} `json:"integrations"`
	}
	if err := decodeStrict(v, &m); err != nil {
		retailError(w, 400, "Errors in the entity format", map[string]string{"integrationModule": err.Error()})
		return
	}
	if m.Code != code || m.IntegrationCode == "" || m.Name == "" || m.Logo == "" || m.ClientID == "" || m.Integrations.Telephony.MakeCallURL == "" {
		retailError(w, 400, "Validation error", map[string]string{"integrationModule": "code (matching the URL), integrationCode, name, logo, clientId and telephony.makeCallUrl are required"})
		return
	}
	r.mu.Lock()
	_, existed := r.modules[code]
	r.modules[code] = json.RawMessage(v)
	r.edits++
	r.mu.Unlock()
	status := http.StatusOK
	if !existed {
		status = http.StatusCreated
	}
	retailStatus(w, status, map[string]any{"info": map[string]any{}})
}

func (r *RetailCRM) manager(w http.ResponseWriter, req *http.Request) {
	phone := req.URL.Query().Get("phone")
	if phone == "" {
		retailError(w, 400, "Parameter 'phone' is missing", nil)
		return
	}
	r.mu.Lock()
	r.lookups++
	id, ok := r.managers[phone]
	r.mu.Unlock()
	if !ok {
		retailError(w, 404, "Not found", nil)
		return
	}
	retailOK(w, map[string]any{"manager": map[string]any{"id": id, "firstName": "Manager", "code": ""}})
}
