// Package megaplan connects callgate to Megaplan (API v3) over outbound
// HTTPS only: call popups through the telephony API (callInfo, updated by
// providerId), history for calls whose popup moment has passed
// (callInfo/history), the client linked to the call (setContractor),
// clients and deals created for unknown callers, the responsible employee
// for smart routing (callRoute), and earlier calls attached to clients
// created later in Megaplan.
package megaplan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"callgate/crm"
	"callgate/crm/outbox"

	"golang.org/x/time/rate"
)

// Config of the connector.
type Config struct {
	URL      string // https://{account}.megaplan.ru
	Username string
	Password string
	// RPS is the client-side request rate (Megaplan publishes none).
	RPS float64
	// Programs maps an upstream account to the deal scheme (program id)
	// its auto-created deals use.
	Programs map[string]int
	// OnRequest is told of every response code ("error" for no response).
	OnRequest func(code string)
	// Log gets what the connector decides on its own, such as a deal left
	// out because Megaplan refused it (nil: slog's default).
	Log *slog.Logger
}

// Connector is the Megaplan connector.
type Connector struct {
	cfg     Config
	base    string
	http    *http.Client
	limit   *rate.Limiter
	session session
	// programs replaces cfg.Programs once set (SetPrograms).
	programs atomic.Pointer[map[string]int]
}

// New returns a connector.
func New(cfg Config, client *http.Client) *Connector {
	if client == nil {
		client = &http.Client{Timeout: 15 * time.Second}
	}
	if cfg.RPS <= 0 {
		cfg.RPS = 3
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Connector{cfg: cfg, base: strings.TrimRight(cfg.URL, "/"), http: client, limit: rate.NewLimiter(rate.Limit(cfg.RPS*0.9), 1)}
}

// Name implements crm.Connector.
func (c *Connector) Name() string { return "megaplan" }

// Stale is how old a popup operation may be and still be shown: past it the
// call is over or nearly, and history tells the CRM instead.
const Stale = 2 * time.Minute

// ref is a link to an entity.
type ref struct {
	ContentType string `json:"contentType"`
	ID          string `json:"id"`
}

// dateTime is Megaplan's DateTime.
type dateTime struct {
	ContentType string `json:"contentType"`
	Value       string `json:"value"`
}

func at(t time.Time) *dateTime {
	if t.IsZero() {
		return nil
	}
	return &dateTime{ContentType: "DateTime", Value: t.UTC().Format(time.RFC3339)}
}

// callInfo is Megaplan's CallInfo.
type callInfo struct {
	ContentType string    `json:"contentType"`
	ID          string    `json:"id,omitempty"`
	Type        string    `json:"type,omitempty"`
	State       string    `json:"state,omitempty"`
	FromPhone   string    `json:"fromPhone,omitempty"`
	ToPhone     string    `json:"toPhone,omitempty"`
	FromUser    *ref      `json:"fromUser,omitempty"`
	ToUser      *ref      `json:"toUser,omitempty"`
	ProviderID  string    `json:"providerId,omitempty"`
	TimeFrom    *dateTime `json:"timeFrom,omitempty"`
	TimeTo      *dateTime `json:"timeTo,omitempty"`
	RecordLinks []string  `json:"recordLinks,omitempty"`
}

// op is an outbox item's body.
type op struct {
	Op   string    `json:"op"` // popup, update, finish, client, attach
	Call *callInfo `json:"call,omitempty"`
	// client and attach
	Phone      string   `json:"phone,omitempty"`
	Employee   string   `json:"employee,omitempty"`
	Create     string   `json:"create,omitempty"` // none, contact, contact+deal
	Program    int      `json:"program,omitempty"`
	Providers  []string `json:"providers,omitempty"`
	Contractor string   `json:"contractor,omitempty"`
	CallID     string   `json:"call_id,omitempty"`
	// Note describes where the caller came from (call tracking).
	Note string `json:"note,omitempty"`
}

func item(call, key, kind string, o op) outbox.Item {
	b, _ := json.Marshal(o)
	return outbox.Item{Key: key, Call: call, Kind: kind, Body: b}
}

func employee(p crm.Person) *ref {
	return &ref{ContentType: "Employee", ID: strconv.Itoa(p.CRMUser)}
}

// ProviderID is the providerId of a leg: the call id for the first (and for a
// missed call), call id and leg number for those after a transfer.
func ProviderID(callID string, leg int) string {
	if leg <= 1 {
		return callID
	}
	return callID + "-" + strconv.Itoa(leg)
}

// base is the call's CallInfo for one employee.
func base(call crm.Call, p crm.Person, pid string) *callInfo {
	ci := &callInfo{ContentType: "CallInfo", ProviderID: pid}
	if call.Direction == "inbound" {
		ci.Type, ci.FromPhone, ci.ToPhone, ci.ToUser = "in", call.Outside, call.TrunkNumber, employee(p)
	} else {
		ci.Type, ci.FromPhone, ci.ToPhone, ci.FromUser = "out", call.TrunkNumber, call.Outside, employee(p)
	}
	return ci
}

func firstMapped(ps []crm.Person) (crm.Person, bool) {
	for _, p := range ps {
		if p.CRMUser > 0 {
			return p, true
		}
	}
	return crm.Person{}, false
}

// Items implements crm.Connector: a popup for the first mapped employee
// rung, "talking" when answered, a popup for the employee a call is
// transferred to, every leg finished with its recording when the call
// ends (or one missed call), then the client linked (created if the
// trunk's rule says so). Calls with no mapped employee are not sent.
func (c *Connector) Items(e crm.Event) []outbox.Item {
	call := e.Call
	if call.Outside == "" {
		return nil
	}
	rung, anyRung := firstMapped(call.Rung)
	var legs []crm.Leg
	for _, l := range call.Legs {
		if l.Person.CRMUser > 0 {
			legs = append(legs, l)
		}
	}
	if !anyRung && len(legs) == 0 {
		return nil
	}
	switch e.Kind {
	case crm.Ringing:
		if !anyRung {
			return nil
		}
		ci := base(call, rung, ProviderID(call.ID, 1))
		ci.State, ci.TimeFrom = "calling", at(call.Started)
		return []outbox.Item{item(call.ID, call.ID+"-popup", "popup", op{Op: "popup", Call: ci})}
	case crm.Answered, crm.Transferred:
		var out []outbox.Item
		for _, l := range legs {
			if l.Ended.IsZero() || e.Kind == crm.Answered {
				ci := base(call, l.Person, ProviderID(call.ID, l.N))
				ci.State, ci.TimeFrom = "talking", at(l.Answered)
				name := "update"
				if l.N > 1 {
					name = "popup" // the new leg's own popup
				}
				out = append(out, item(call.ID, fmt.Sprintf("%s-%d-talking", call.ID, l.N), name, op{Op: name, Call: ci}))
			}
		}
		return out
	case crm.Ended:
		var out []outbox.Item
		for _, l := range legs {
			ci := base(call, l.Person, ProviderID(call.ID, l.N))
			ci.State, ci.TimeFrom, ci.TimeTo = "finished", at(l.Answered), at(l.Ended)
			if l.RecordURL != "" {
				ci.RecordLinks = []string{l.RecordURL}
			}
			out = append(out, item(call.ID, fmt.Sprintf("%s-%d-finish", call.ID, l.N), "finish", op{Op: "finish", Call: ci}))
		}
		if len(call.Legs) == 0 && anyRung {
			ci := base(call, rung, ProviderID(call.ID, 1))
			ci.Type, ci.State, ci.TimeFrom, ci.TimeTo = "miss", "finished", at(call.Started), at(call.Ended)
			out = append(out, item(call.ID, call.ID+"-0-finish", "finish", op{Op: "finish", Call: ci}))
		}
		handler := rung
		if len(legs) > 0 {
			handler = legs[0].Person
		}
		var pids []string
		for _, l := range legs {
			pids = append(pids, ProviderID(call.ID, l.N))
		}
		if len(legs) == 0 {
			pids = []string{ProviderID(call.ID, 1)}
		}
		create := call.Autocreate
		if create == "" || call.Direction != "inbound" {
			create = "none" // only a new client calling in becomes a contractor
		}
		out = append(out, item(call.ID, call.ID+"-client", "client", op{Op: "client", Phone: call.Outside, Employee: strconv.Itoa(handler.CRMUser),
			Create: create, Program: c.program(call.Account), Providers: pids, CallID: call.ID, Note: note(call.Tracking)}))
		return out
	}
	return nil
}

// Deliver implements outbox.Deliverer.
func (c *Connector) Deliver(ctx context.Context, it *outbox.Item) error {
	var o op
	if err := json.Unmarshal(it.Body, &o); err != nil {
		return &outbox.Permanent{Err: fmt.Errorf("megaplan: bad item: %w", err)}
	}
	stale := time.Since(it.Created) > Stale
	switch o.Op {
	case "popup":
		if stale {
			return nil
		}
		// POST callInfo creates a call every time: look first, so a retry
		// after a lost answer does not show a second call.
		var found callInfo
		err := c.do(ctx, http.MethodGet, "callInfo/provider", map[string]string{"providerId": o.Call.ProviderID}, &found)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errNotFound) {
			return err
		}
		return c.do(ctx, http.MethodPost, "callInfo", o.Call, nil)
	case "update":
		if stale {
			return nil
		}
		err := c.do(ctx, http.MethodPost, "callInfo/provider", o.Call, nil)
		if errors.Is(err, errNotFound) {
			return nil // its popup was never shown; history will tell
		}
		return err
	case "finish":
		err := c.do(ctx, http.MethodPost, "callInfo/provider", o.Call, nil)
		if errors.Is(err, errNotFound) {
			// No popup was shown (a backlog, a missed popup): history.
			return c.do(ctx, http.MethodPost, "callInfo/history", []*callInfo{o.Call}, nil)
		}
		return err
	case "client":
		return c.deliverClient(ctx, o)
	case "attach":
		return c.link(ctx, o.Providers, o.Contractor)
	}
	return &outbox.Permanent{Err: fmt.Errorf("megaplan: unknown operation %q", o.Op)}
}

// Responsible asks callRoute who answers a client's calls; "" (an employee
// id) when Megaplan knows of nobody in particular.
func (c *Connector) Responsible(ctx context.Context, phone string) (string, error) {
	var route struct {
		Type      string `json:"type"`
		Employees []ref  `json:"employees"`
	}
	// The documented form is the digits alone: "79991231212".
	if err := c.do(ctx, http.MethodGet, "callRoute", map[string]string{"phone": strings.TrimPrefix(phone, "+")}, &route); err != nil {
		if errors.Is(err, errNotFound) {
			return "", nil
		}
		return "", err
	}
	if route.Type != "responsible" || len(route.Employees) == 0 {
		return "", nil
	}
	return route.Employees[0].ID, nil
}

// note is the tracking data for a client's or deal's description.
func note(t *crm.Tracking) string {
	if t == nil || t.Source == "" {
		return ""
	}
	s := "Источник: " + t.Source + " (номер " + t.Number + ")"
	if utm := t.UTM(); t.Medium != "" || t.Campaign != "" {
		s += "; " + utm
	}
	if t.Page != "" {
		s += "; страница " + t.Page
	}
	return s
}
