// Package retailcrm connects callgate to RetailCRM (API v5) over outbound
// HTTPS only: it registers the telephony integration module, shows call
// popups (telephony/call/event) and uploads call history with recording
// links (telephony/calls/upload). Bodies are form-encoded with one JSON
// field per entity, and the API key travels in the X-API-KEY header, never
// in a URL or a log line.
package retailcrm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"callgate/crm"
	"callgate/crm/outbox"

	"golang.org/x/time/rate"
)

// Rate limits of RetailCRM per API key (the official SDK's constants).
const (
	RPS          = 10
	TelephonyRPS = 40
)

// Config of the connector.
type Config struct {
	URL        string // https://{account}.retailcrm.ru
	APIKey     string
	Site       string
	ModuleCode string
	Location   *time.Location // the account's time zone for dates
	// PublicURL is callgate's API as RetailCRM reaches it (makeCallUrl).
	PublicURL string
	ClientID  string // shared secret RetailCRM echoes on makeCallUrl
	// Users maps extensions to RetailCRM user ids (additionalCodes).
	Users map[string]int
	// ExternalPhones are the trunk numbers (externalPhones).
	ExternalPhones []string
	// Sites names the store (site code) of a trunk number whose calls do
	// not belong to Site: an account with several stores gets each call,
	// its customer and order under the store the number belongs to.
	Sites map[string]string
	// OnRequest is told of every response code ("error" for no response).
	OnRequest func(code string)
}

// Connector is the RetailCRM connector.
type Connector struct {
	cfg       Config
	http      *http.Client
	general   *rate.Limiter
	telephony *rate.Limiter
	// reloaded replaces cfg.Users and cfg.ExternalPhones once set (SetCodes).
	reloaded atomic.Pointer[codes]
}

// New returns a connector.
func New(cfg Config, client *http.Client) *Connector {
	if client == nil {
		client = &http.Client{Timeout: 15 * time.Second}
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	// 90% of the limits: the server counts arrivals, and network jitter
	// can bunch requests sent exactly at the limit.
	return &Connector{cfg: cfg, http: client,
		general:   rate.NewLimiter(RPS*0.9, 1),
		telephony: rate.NewLimiter(TelephonyRPS*0.9, 1)}
}

// Name implements crm.Connector.
func (c *Connector) Name() string { return "retailcrm" }

// request is an outbox item's body: one API call.
type request struct {
	Path string            `json:"path"`
	Form map[string]string `json:"form"`
}

func item(call, key, kind, path string, form map[string]string) outbox.Item {
	b, _ := json.Marshal(request{Path: path, Form: form})
	return outbox.Item{Key: key, Call: call, Kind: kind, Body: b}
}

// event is RetailCRM's CallEvent.
type event struct {
	Phone          string   `json:"phone"`
	Type           string   `json:"type"`
	Codes          []string `json:"codes,omitempty"`
	UserIDs        []int    `json:"userIds,omitempty"`
	Site           string   `json:"site,omitempty"`
	HangupStatus   string   `json:"hangupStatus,omitempty"`
	ExternalPhone  string   `json:"externalPhone,omitempty"`
	CallExternalID string   `json:"callExternalId"`
	// WebAnalytics is where the caller came from (call tracking).
	WebAnalytics *webAnalytics `json:"webAnalyticsData,omitempty"`
}

// webAnalytics is RetailCRM's WebAnalyticsData: the campaign and the UTM
// query string of the visit.
type webAnalytics struct {
	Campaign    campaign `json:"campaign"`
	QueryString string   `json:"queryString,omitempty"`
}

type campaign struct {
	Name string `json:"name"`
	Code string `json:"code"`
}

// analytics is the call's tracking as RetailCRM takes it: the campaign
// (or the channel of a static number) and the UTM marks.
func analytics(t *crm.Tracking) *webAnalytics {
	if t == nil || t.Source == "" {
		return nil
	}
	w := &webAnalytics{Campaign: campaign{Name: t.Source, Code: t.Number}, QueryString: t.UTM()}
	if t.Campaign != "" {
		w.Campaign = campaign{Name: t.Campaign, Code: t.Campaign}
	}
	return w
}

// callRecord is RetailCRM's Call (history upload).
type callRecord struct {
	Date            string  `json:"date"`
	Type            string  `json:"type"`
	Phone           string  `json:"phone"`
	Code            string  `json:"code,omitempty"`
	UserID          int     `json:"userId,omitempty"`
	Result          string  `json:"result"`
	Duration        int     `json:"duration"`
	DurationWaiting int     `json:"durationWaiting"`
	ExternalID      string  `json:"externalId"`
	RecordURL       string  `json:"recordUrl,omitempty"`
	ExternalPhone   string  `json:"externalPhone,omitempty"`
	Site            string  `json:"site,omitempty"`
	Source          *source `json:"source,omitempty"`
}

// source is RetailCRM's SerializedSource: the call-tracking marks, so the
// call (and an order made for it) shows where the client came from.
type source struct {
	Source   string `json:"source,omitempty"`
	Medium   string `json:"medium,omitempty"`
	Campaign string `json:"campaign,omitempty"`
	Keyword  string `json:"keyword,omitempty"`
	Content  string `json:"content,omitempty"`
}

func sourceOf(t *crm.Tracking) *source {
	if t == nil || t.Source == "" {
		return nil
	}
	return &source{Source: t.Source, Medium: t.Medium, Campaign: t.Campaign, Keyword: t.Term, Content: t.Content}
}

func direction(c crm.Call) string {
	if c.Direction == "inbound" {
		return "in"
	}
	return "out"
}

// mapped are the call's people who have a RetailCRM user.
func mapped(ps []crm.Person) ([]string, []int) {
	var codes []string
	var ids []int
	for _, p := range ps {
		if p.CRMUser > 0 && !contains(ids, p.CRMUser) {
			codes = append(codes, p.Extension)
			ids = append(ids, p.CRMUser)
		}
	}
	return codes, ids
}

func hangupStatus(result string) string {
	switch result {
	case "answered":
		return "answered"
	case "busy":
		return "busy"
	case "abandoned":
		return "cancel"
	case "no-answer":
		return "no answered"
	}
	return "failed"
}

func historyResult(result string) string {
	switch result {
	case "answered":
		return "answered"
	case "busy":
		return "busy"
	case "no-answer", "abandoned":
		return "no answer"
	}
	return "failed"
}

// Items implements crm.Connector: a popup when phones ring, a hangup event
// and one history entry per leg (or one for a missed call) when it ends.
// Calls with no employee mapped to a RetailCRM user are not sent.
func (c *Connector) Items(e crm.Event) []outbox.Item {
	call := e.Call
	codes, ids := mapped(call.Rung)
	for _, l := range call.Legs {
		if l.Person.CRMUser > 0 && !contains(ids, l.Person.CRMUser) {
			codes, ids = append(codes, l.Person.Extension), append(ids, l.Person.CRMUser)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	phone := strings.TrimPrefix(call.Outside, "+")
	ev := event{Phone: phone, Codes: codes, UserIDs: ids, Site: c.site(call.TrunkNumber), ExternalPhone: call.TrunkNumber, CallExternalID: call.ID,
		WebAnalytics: analytics(call.Tracking)}
	switch e.Kind {
	case crm.Ringing:
		ev.Type = direction(call)
		b, _ := json.Marshal(ev)
		return []outbox.Item{item(call.ID, call.ID+"-event-"+ev.Type, "event", "/api/v5/telephony/call/event", map[string]string{"event": string(b)})}
	case crm.Ended:
		ev.Type, ev.HangupStatus = "hangup", hangupStatus(call.Result)
		b, _ := json.Marshal(ev)
		out := []outbox.Item{item(call.ID, call.ID+"-event-hangup", "event", "/api/v5/telephony/call/event", map[string]string{"event": string(b)})}
		if call.Direction == "inbound" && (call.Autocreate == "contact" || call.Autocreate == "contact+deal") {
			// Before the history, so the call lands on the new customer.
			// Only inbound callers become customers: an outbound call is
			// placed to someone the employee already chose to call.
			out = append(out, c.autocreateItem(call, ids[0]))
		}
		for _, r := range c.history(call) {
			b, _ := json.Marshal([]callRecord{r})
			out = append(out, item(call.ID, r.ExternalID+"-upload", "upload", "/api/v5/telephony/calls/upload", map[string]string{"calls": string(b)}))
		}
		return out
	}
	return nil
}

func contains(ids []int, id int) bool {
	for _, v := range ids {
		if v == id {
			return true
		}
	}
	return false
}

// history is one entry per leg with a mapped employee, or one entry for a
// call nobody answered (on the first mapped employee rung).
func (c *Connector) history(call crm.Call) []callRecord {
	base := callRecord{Type: direction(call), Phone: strings.TrimPrefix(call.Outside, "+"), ExternalPhone: call.TrunkNumber, Site: c.site(call.TrunkNumber),
		Source: sourceOf(call.Tracking)}
	var out []callRecord
	for _, l := range call.Legs {
		if l.Person.CRMUser == 0 {
			continue
		}
		r := base
		r.Date = l.Answered.In(c.cfg.Location).Format("2006-01-02 15:04:05")
		r.Code, r.UserID = l.Person.Extension, l.Person.CRMUser
		r.Result = "answered"
		r.Duration = int(l.TalkSeconds + 0.5)
		if l.N == 1 {
			r.DurationWaiting = int(call.WaitSeconds + 0.5)
		}
		r.ExternalID = call.ID + "-" + strconv.Itoa(l.N)
		r.RecordURL = l.RecordURL
		out = append(out, r)
	}
	if len(call.Legs) == 0 {
		for _, p := range call.Rung {
			if p.CRMUser == 0 {
				continue
			}
			r := base
			r.Date = call.Started.In(c.cfg.Location).Format("2006-01-02 15:04:05")
			r.Code, r.UserID = p.Extension, p.CRMUser
			r.Result = historyResult(call.Result)
			r.DurationWaiting = int(call.WaitSeconds + 0.5)
			r.ExternalID = call.ID + "-0"
			out = append(out, r)
			break
		}
	}
	return out
}

// apiError is RetailCRM's error body.
type apiError struct {
	Success  bool            `json:"success"`
	ErrorMsg string          `json:"errorMsg"`
	Errors   json.RawMessage `json:"errors"`
}

// Deliver implements outbox.Deliverer.
func (c *Connector) Deliver(ctx context.Context, it *outbox.Item) error {
	var r request
	if err := json.Unmarshal(it.Body, &r); err != nil {
		return &outbox.Permanent{Err: fmt.Errorf("retailcrm: bad item: %w", err)}
	}
	if r.Path == autocreatePath {
		return c.deliverAutocreate(ctx, r.Form)
	}
	form := url.Values{}
	for k, v := range r.Form {
		form.Set(k, v)
	}
	_, err := c.post(ctx, r.Path, form)
	return err
}

// BatchSize implements outbox.Batcher: history uploads travel up to 50 per
// request (RetailCRM's cap).
func (c *Connector) BatchSize(kind string) int {
	if kind == "upload" {
		return 50
	}
	return 1
}

// DeliverBatch implements outbox.Batcher: the uploads' calls in one
// telephony/calls/upload request.
func (c *Connector) DeliverBatch(ctx context.Context, items []*outbox.Item) error {
	var all []json.RawMessage
	for _, it := range items {
		var r request
		var calls []json.RawMessage
		if err := json.Unmarshal(it.Body, &r); err != nil || json.Unmarshal([]byte(r.Form["calls"]), &calls) != nil {
			return &outbox.Permanent{Err: fmt.Errorf("retailcrm: bad upload item %s", it.Key)}
		}
		all = append(all, calls...)
	}
	b, _ := json.Marshal(all)
	_, err := c.post(ctx, "/api/v5/telephony/calls/upload", url.Values{"calls": {string(b)}})
	return err
}

// post sends a form to the API within the rate limits and classifies the
// answer for the outbox.
func (c *Connector) post(ctx context.Context, path string, form url.Values) ([]byte, error) {
	lim := c.general
	if strings.HasPrefix(path, "/api/v5/telephony/") {
		lim = c.telephony
	}
	if err := lim.Wait(ctx); err != nil {
		return nil, &outbox.Temporary{Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, "POST", strings.TrimRight(c.cfg.URL, "/")+path, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, &outbox.Permanent{Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-API-KEY", c.cfg.APIKey)
	res, err := c.http.Do(req)
	if err != nil {
		c.count("error")
		return nil, &outbox.Temporary{Err: fmt.Errorf("retailcrm %s: %w", path, errors.Unwrap(err))}
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	c.count(strconv.Itoa(res.StatusCode))
	var ae apiError
	_ = json.Unmarshal(body, &ae)
	why := fmt.Errorf("retailcrm %s: %d %s %s", path, res.StatusCode, ae.ErrorMsg, strings.TrimSpace(string(ae.Errors)))
	switch {
	case res.StatusCode == http.StatusOK || res.StatusCode == http.StatusCreated:
		return body, nil
	case res.StatusCode == http.StatusTooManyRequests || res.StatusCode == http.StatusServiceUnavailable || res.StatusCode >= 500:
		return nil, &outbox.Temporary{Err: why, After: outbox.RetryAfter(res.Header.Get("Retry-After"))}
	case res.StatusCode == http.StatusUnauthorized || res.StatusCode == http.StatusForbidden && strings.Contains(ae.ErrorMsg, "apiKey"):
		// A wrong key is fixed in the configuration; keep the items.
		return nil, &outbox.Temporary{Err: why, After: 5 * time.Minute}
	default:
		return nil, &outbox.Permanent{Err: why}
	}
}

func (c *Connector) count(code string) {
	if c.cfg.OnRequest != nil {
		c.cfg.OnRequest(code)
	}
}

// Register upserts the telephony integration module: makeCallUrl on
// callgate's public URL, the events callgate sends, users' extensions and
// the trunk numbers. Editing with the same code is idempotent.
func (c *Connector) Register(ctx context.Context) error {
	users, externalPhones := c.codes()
	var codes []map[string]any
	for ext, id := range users {
		codes = append(codes, map[string]any{"userId": id, "code": ext})
	}
	var phones []map[string]string
	for _, n := range externalPhones {
		phones = append(phones, map[string]string{"siteCode": c.site(n), "externalPhone": n})
	}
	base := strings.TrimRight(c.cfg.PublicURL, "/")
	module := map[string]any{
		"code": c.cfg.ModuleCode, "integrationCode": c.cfg.ModuleCode, "active": true, "name": "callgate",
		"logo": base + "/logo.svg", "clientId": c.cfg.ClientID, "baseUrl": base, "accountUrl": base + "/",
		"integrations": map[string]any{"telephony": map[string]any{
			"makeCallUrl": base + "/api/v1/retailcrm/make-call", "changeUserStatusUrl": base + "/api/v1/retailcrm/user-status",
			"allowEdit": false, "inputEventSupported": true, "outputEventSupported": true, "hangupEventSupported": true,
			"additionalCodes": codes, "externalPhones": phones,
		}},
	}
	b, _ := json.Marshal(module)
	_, err := c.post(ctx, "/api/v5/integration-modules/"+url.PathEscape(c.cfg.ModuleCode)+"/edit", url.Values{"integrationModule": {string(b)}})
	if err != nil {
		return fmt.Errorf("retailcrm: register module: %w", err)
	}
	return nil
}

// Manager asks RetailCRM which user is responsible for a client's phone
// (telephony/manager); 0 when the client or their manager is unknown.
func (c *Connector) Manager(ctx context.Context, phone string) (int, error) {
	if err := c.telephony.Wait(ctx); err != nil {
		return 0, err
	}
	q := url.Values{"phone": {strings.TrimPrefix(phone, "+")}, "details": {"0"}}
	req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimRight(c.cfg.URL, "/")+"/api/v5/telephony/manager?"+q.Encode(), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-API-KEY", c.cfg.APIKey)
	res, err := c.http.Do(req)
	if err != nil {
		c.count("error")
		return 0, fmt.Errorf("retailcrm telephony/manager: %w", errors.Unwrap(err))
	}
	defer res.Body.Close()
	c.count(strconv.Itoa(res.StatusCode))
	var body struct {
		Success  bool   `json:"success"`
		ErrorMsg string `json:"errorMsg"`
		Manager  *struct {
			ID int `json:"id"`
		} `json:"manager"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&body); err != nil {
		return 0, fmt.Errorf("retailcrm telephony/manager: %d: %w", res.StatusCode, err)
	}
	if res.StatusCode == http.StatusNotFound || body.Manager == nil {
		return 0, nil
	}
	if res.StatusCode != http.StatusOK || !body.Success {
		return 0, fmt.Errorf("retailcrm telephony/manager: %d %s", res.StatusCode, body.ErrorMsg)
	}
	return body.Manager.ID, nil
}
