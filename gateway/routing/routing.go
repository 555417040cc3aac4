// Package routing decides where calls go: which extensions an inbound call
// to an upstream account rings, and whether what a phone dialled is an
// extension (internal) or an outside number, normalised for the VPBX.
package routing

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"callgate/gateway/config"
	"callgate/gateway/directory"
	"callgate/sip/b2bua"
	"callgate/sip/registrar"

	"github.com/nyaruka/phonenumbers"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrInvalidNumber means a dialled string is not a phone number.
var ErrInvalidNumber = errors.New("not a valid phone number")

// Router implements b2bua.Router from the configuration.
type Router struct {
	dir *directory.Directory
	// t is the configuration's routes in force; Reload swaps them.
	t atomic.Pointer[table]

	// Responsible names the employee responsible for a client (E.164) in
	// the CRM, within the routing budget; "" when unknown. Nil: no smart
	// routing.
	Responsible func(phone string) string
	// ResponsibleTimeout is how long the responsible employee rings first.
	ResponsibleTimeout time.Duration
	// Away reports an employee whose CRM status says they are not taking
	// calls (busy, dinner, break): inbound calls pass them by. Nil: none.
	Away func(employee string) bool

	rules *DialRules
	// Log receives the dial rules' refusals.
	Log *slog.Logger
	// DialRefused counts the dial rules' refusals by rule
	// (callgate_dial_refused_total).
	DialRefused *prometheus.CounterVec
}

// table is what the configuration says about routes: groups, accounts,
// the region numbers are read in and how long phones ring. It never
// changes once built.
type table struct {
	groups      map[string]config.Group
	accounts    map[string]config.Account // by user
	byEmployee  map[string]config.Account
	first       config.Account
	region      string
	ringTimeout time.Duration
}

func newTable(cfg *config.Config) *table {
	t := &table{groups: map[string]config.Group{}, accounts: map[string]config.Account{}, byEmployee: map[string]config.Account{},
		region: cfg.Calls.DefaultRegion, ringTimeout: cfg.Calls.RingTimeout.D()}
	for _, g := range cfg.Groups {
		t.groups[g.ID] = g
	}
	for i, a := range cfg.Upstream.Accounts {
		t.accounts[a.User] = a
		if a.Employee != "" {
			if _, ok := t.byEmployee[a.Employee]; !ok {
				t.byEmployee[a.Employee] = a
			}
		}
		if i == 0 {
			t.first = a
		}
	}
	return t
}

// New builds the router.
func New(cfg *config.Config, dir *directory.Directory) *Router {
	r := &Router{dir: dir, rules: NewDialRules(cfg), Log: slog.New(slog.DiscardHandler), DialRefused: newDialRefused()}
	r.t.Store(newTable(cfg))
	return r
}

// Reload puts a new configuration's routes in force (groups, accounts,
// ring timeout, dial rules and limits): the next call is routed by them.
// Calls in progress keep the route they were given, and their places
// under the limits.
func (r *Router) Reload(cfg *config.Config) {
	r.t.Store(newTable(cfg))
	r.rules.Reload(cfg)
}

// Normalize returns a number in E.164 ("+79161234567"). "8 916 123-45-67",
// "+7 (916) 123 45 67" and "79161234567" are one number in region RU.
func Normalize(raw, region string) (string, error) {
	n, err := parse(raw, region)
	if err != nil {
		return "", err
	}
	return e164(raw, n)
}

// e164 formats n, refusing what phonenumbers lets through longer than
// E.164's 15 digits.
func e164(raw string, n *phonenumbers.PhoneNumber) (string, error) {
	s := phonenumbers.Format(n, phonenumbers.E164)
	if len(s) > 16 {
		return "", fmt.Errorf("%q: %w", raw, ErrInvalidNumber)
	}
	return s, nil
}

// parse reads a dialled or received number in region's conventions.
func parse(raw, region string) (*phonenumbers.PhoneNumber, error) {
	s := strings.TrimSpace(raw)
	if s == "" || len(s) > 32 {
		return nil, ErrInvalidNumber
	}
	// A bare 11-digit national number with country code (7916...) is common
	// in the VPBX and in CRMs: read it as international.
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
	if !strings.HasPrefix(s, "+") && !strings.HasPrefix(s, "8") && len(digits) >= 11 {
		s = "+" + digits
	}
	n, err := phonenumbers.Parse(s, region)
	if err != nil || !phonenumbers.IsPossibleNumber(n) {
		return nil, fmt.Errorf("%q: %w", raw, ErrInvalidNumber)
	}
	return n, nil
}

// ForVPBX is how the VPBX wants a number in a Request-URI: E.164 digits
// without "+" (79161234567).
func ForVPBX(e164 string) string { return strings.TrimPrefix(e164, "+") }

// Inbound rings the account's employee (all their lines), or its group:
// every member at once, or member after member.
func (r *Router) Inbound(account, caller string) (b2bua.InboundRoute, error) {
	t := r.t.Load()
	a, ok := t.accounts[account]
	if !ok {
		return b2bua.InboundRoute{}, fmt.Errorf("unknown account %q", account)
	}
	route := b2bua.InboundRoute{RingTimeout: t.ringTimeout}
	members := []string{a.Employee}
	sequential := false
	if g, ok := t.groups[a.Group]; ok {
		members, sequential = g.Members, g.Strategy == "sequential"
		if g.RingTimeout > 0 {
			route.RingTimeout = g.RingTimeout.D()
		}
	}
	var all []b2bua.Target
	for _, id := range members {
		e, ok := r.dir.Employee(id)
		if !ok || r.away(id) {
			continue
		}
		var step []b2bua.Target
		for _, x := range e.Extensions {
			step = append(step, b2bua.Target{Extension: x, Employee: e.ID})
		}
		if sequential {
			route.Steps = append(route.Steps, step)
		} else {
			all = append(all, step...)
		}
	}
	if !sequential && len(all) > 0 {
		route.Steps = [][]b2bua.Target{all}
	}
	if len(route.Steps) == 0 {
		return route, fmt.Errorf("account %q rings nobody (no employee, or all away)", account)
	}
	return r.responsibleFirst(route, caller, t.region), nil
}

func (r *Router) away(employee string) bool { return r.Away != nil && r.Away(employee) }

// responsibleFirst puts the client's responsible employee in front of the
// normal target for ResponsibleTimeout.
func (r *Router) responsibleFirst(route b2bua.InboundRoute, caller, region string) b2bua.InboundRoute {
	if r.Responsible == nil {
		return route
	}
	num, err := Normalize(caller, region)
	if err != nil {
		return route
	}
	id := r.Responsible(num)
	e, ok := r.dir.Employee(id)
	if id == "" || !ok || r.away(id) {
		return route
	}
	var first []b2bua.Target
	for _, x := range e.Extensions {
		first = append(first, b2bua.Target{Extension: x, Employee: e.ID})
	}
	timeouts := []time.Duration{r.ResponsibleTimeout}
	for range route.Steps {
		timeouts = append(timeouts, route.RingTimeout)
	}
	route.Steps = append([][]b2bua.Target{first}, route.Steps...)
	route.StepTimeouts = timeouts
	return route
}

// ShiftCode starts the feature codes of shift work: *77*<pin> logs the
// employee with that PIN in at the desk phone dialling it, *77# logs the
// desk out.
const ShiftCode = "*77"

// shift handles a shift feature code dialled on a desk phone.
func (r *Router) shift(desk, dialled string) error {
	if !r.dir.IsDesk(desk) {
		return &b2bua.FeatureDone{Status: 403, Reason: "Not a shared desk"}
	}
	rest := strings.TrimSuffix(strings.TrimPrefix(dialled, ShiftCode), "#")
	if rest == "" {
		_ = r.dir.Leave(desk, "")
		return &b2bua.FeatureDone{Status: 603, Reason: "Shift ended"}
	}
	id, ok := r.dir.ByPIN(strings.TrimPrefix(rest, "*"))
	if !ok {
		return &b2bua.FeatureDone{Status: 403, Reason: "Wrong PIN", AuthFailure: registrar.ReasonWrongPIN}
	}
	_ = r.dir.SitAt(desk, id)
	return &b2bua.FeatureDone{Status: 603, Reason: "Shift started"}
}

// Outbound routes what extension dialled.
func (r *Router) Outbound(extension, dialled string) (b2bua.OutboundRoute, error) {
	return r.outbound(extension, dialled, "call")
}

// outbound routes what extension dialled for a call or a transfer (via).
func (r *Router) outbound(extension, dialled, via string) (b2bua.OutboundRoute, error) {
	if strings.HasPrefix(dialled, ShiftCode) {
		return b2bua.OutboundRoute{}, r.shift(extension, dialled)
	}
	caller, ok := r.dir.ByExtension(extension)
	if !ok {
		return b2bua.OutboundRoute{}, fmt.Errorf("unknown extension %q", extension)
	}
	if callee, ok := r.dir.ByExtension(dialled); ok {
		return b2bua.OutboundRoute{Internal: true, Target: b2bua.Target{Extension: dialled, Employee: callee.ID}, Employee: caller.ID, CallerName: caller.Name}, nil
	}
	t := r.t.Load()
	num, err := Classify(dialled, t.region)
	if err != nil {
		return b2bua.OutboundRoute{}, err
	}
	a, ok := t.byEmployee[caller.ID]
	if !ok {
		a = t.first
	}
	if a.User == "" {
		return b2bua.OutboundRoute{}, errors.New("no upstream account configured")
	}
	lease, err := r.admit(caller.ID, &num, via)
	if err != nil {
		return b2bua.OutboundRoute{}, err
	}
	return b2bua.OutboundRoute{Account: b2bua.Account{User: a.User, AuthUser: a.AuthUser, Password: a.Password},
		Number: ForVPBX(num.E164), Employee: caller.ID, Lease: lease}, nil
}

// ClickToCall routes a call the API places for an employee: the number in
// E.164 and in the form the VPBX expects, and the account to dial from: the
// one whose trunk number is fromNumber (a store's number) if any, else the
// employee's own, else the first.
func (r *Router) ClickToCall(employee, number, fromNumber string) (b2bua.OutboundRoute, string, error) {
	t := r.t.Load()
	num, err := Classify(number, t.region)
	if err != nil {
		return b2bua.OutboundRoute{}, "", err
	}
	a, ok := config.Account{}, false
	if fromNumber != "" {
		if want, err := Normalize(fromNumber, t.region); err == nil {
			for _, acc := range t.accounts {
				if n, err := Normalize(acc.Number, t.region); err == nil && acc.Number != "" && n == want {
					a, ok = acc, true
					break
				}
			}
		}
	}
	if !ok {
		a, ok = t.byEmployee[employee]
	}
	if !ok {
		a = t.first
	}
	if a.User == "" {
		return b2bua.OutboundRoute{}, "", errors.New("no upstream account configured")
	}
	lease, err := r.admit(employee, &num, "click-to-call")
	if err != nil {
		return b2bua.OutboundRoute{}, "", err
	}
	return b2bua.OutboundRoute{Account: b2bua.Account{User: a.User, AuthUser: a.AuthUser, Password: a.Password},
		Number: ForVPBX(num.E164), Employee: employee, Lease: lease}, num.E164, nil
}

// Transfer resolves a transfer target: an extension rings that line, an
// employee id every line of that employee, anything else is dialled as a
// number through the transferor's account.
func (r *Router) Transfer(extension, target string) (b2bua.TransferRoute, error) {
	if emp, ok := r.dir.ByExtension(target); ok {
		return b2bua.TransferRoute{Targets: []b2bua.Target{{Extension: target, Employee: emp.ID}}}, nil
	}
	if emp, ok := r.dir.Employee(target); ok {
		var t []b2bua.Target
		for _, ext := range emp.Extensions {
			t = append(t, b2bua.Target{Extension: ext, Employee: emp.ID})
		}
		return b2bua.TransferRoute{Targets: t}, nil
	}
	route, err := r.outbound(extension, target, "transfer")
	if err != nil {
		return b2bua.TransferRoute{}, err
	}
	return b2bua.TransferRoute{Upstream: &route}, nil
}
