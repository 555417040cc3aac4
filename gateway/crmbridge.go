package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"callgate/crm"
	"callgate/crm/outbox"
	"callgate/crm/retailcrm"
	"callgate/gateway/api"
	"callgate/gateway/calls"
	"callgate/gateway/routing"

	"github.com/prometheus/client_golang/prometheus"
)

// crmLink is one enabled CRM: its connector, its outbox and its rules.
type crmLink struct {
	conn    crm.Connector
	box     *outbox.Outbox
	since   time.Time       // calls that started earlier are not sent
	users   map[string]int  // employee -> CRM user
	exclude map[string]bool // employees whose calls are never sent
	events  <-chan calls.Event
	// register runs once at start (RetailCRM's module upsert).
	register func(context.Context) error
}

// newCRM sets up the enabled connectors, their outboxes and metrics.
func (g *Gateway) newCRM() error {
	r := g.cfg.CRM.RetailCRM
	if !r.Enabled {
		return nil
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "callgate_crm_requests_total", Help: "Requests to CRMs by response code."}, []string{"crm", "code"})
	g.prom.MustRegister(requests)

	loc, _ := time.LoadLocation(r.TimeZone)
	users, extUsers := map[string]int{}, map[string]int{}
	for _, e := range g.cfg.Employees {
		if e.RetailCRMUser > 0 {
			users[e.ID] = e.RetailCRMUser
			extUsers[e.Extensions[0]] = e.RetailCRMUser
		}
	}
	var phones []string
	for _, a := range g.cfg.Upstream.Accounts {
		if n, err := routing.Normalize(a.Number, g.cfg.Calls.DefaultRegion); err == nil {
			phones = append(phones, n)
		}
	}
	random := make([]byte, 16)
	_, _ = rand.Read(random)
	clientID, err := g.store.Once("crm.retailcrm.client_id", []byte(hex.EncodeToString(random)))
	if err != nil {
		return err
	}
	since, err := g.store.Once("crm.retailcrm.since", []byte(strconv.FormatInt(time.Now().UnixNano(), 10)))
	if err != nil {
		return err
	}
	sinceNS, _ := strconv.ParseInt(string(since), 10, 64)
	conn := retailcrm.New(retailcrm.Config{URL: r.URL, APIKey: r.APIKey, Site: r.Site, ModuleCode: r.ModuleCode, Location: loc,
		PublicURL: g.cfg.HTTP.PublicURL, ClientID: string(clientID), Users: extUsers, ExternalPhones: phones,
		OnRequest: func(code string) { requests.WithLabelValues("retailcrm", code).Inc() }}, nil)
	box, err := outbox.Open(g.store, conn.Name(), conn, outbox.Options{MaxBackoff: r.RetryMax.D(), OnResult: func(it *outbox.Item, err error) {
		if err != nil {
			g.log.Warn("CRM delivery failed", "crm", "retailcrm", "call_id", it.Call, "kind", it.Kind, "attempts", it.Attempts+1, "error", err)
		}
	}})
	if err != nil {
		return err
	}
	link := &crmLink{conn: conn, box: box, since: time.Unix(0, sinceNS), users: users, exclude: map[string]bool{}, register: conn.Register}
	for _, id := range r.Exclude {
		link.exclude[id] = true
	}
	link.events, _ = g.calls.bus.Subscribe(4096)
	byUser := map[int]string{}
	for id, u := range users {
		byUser[u] = id
	}
	resp := newResponsible(func(ctx context.Context, phone string) (string, error) {
		u, err := conn.Manager(ctx, phone)
		if err != nil {
			return "", err
		}
		if r.Exclude != nil {
			for _, x := range r.Exclude {
				if x == byUser[u] {
					return "", nil
				}
			}
		}
		return byUser[u], nil
	}, g.cfg.Routing.CRMBudget.D(), g.cfg.Routing.CacheTTL.D())
	g.router.Responsible = resp.Who
	g.router.ResponsibleTimeout = g.cfg.Routing.ResponsibleTimeout.D()
	g.crm = append(g.crm, link)
	g.prom.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_crm_outbox_depth", Help: "CRM operations waiting to be delivered.", ConstLabels: prometheus.Labels{"crm": "retailcrm"}},
			func() float64 { return float64(box.Status().Depth) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_crm_dead_letters", Help: "CRM operations the CRM refused for good.", ConstLabels: prometheus.Labels{"crm": "retailcrm"}},
			func() float64 { return float64(box.Status().Dead) }),
	)
	return nil
}

// runCRM starts the outbox workers, the module registration and the loops
// turning call events into CRM operations.
func (g *Gateway) runCRM(ctx context.Context) {
	for _, l := range g.crm {
		go l.box.Run(ctx)
		go func() {
			// Registration retries until the CRM takes it: it only says
			// what callgate offers, calls are delivered regardless.
			for wait := time.Second; ctx.Err() == nil; wait = min(2*wait, 5*time.Minute) {
				if err := l.register(ctx); err == nil {
					return
				} else {
					g.log.Warn("CRM registration failed", "crm", l.conn.Name(), "error", err)
				}
				select {
				case <-ctx.Done():
				case <-time.After(wait):
				}
			}
		}()
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case e := <-l.events:
					g.toCRM(l, e)
				}
			}
		}()
	}
}

// toCRM queues a call event's operations for one CRM, applying the rules:
// internal calls never, calls from before the connector was enabled never,
// excluded employees as if unmapped.
func (g *Gateway) toCRM(l *crmLink, e calls.Event) {
	r := e.Record
	if r.Internal || r.Started.Before(l.since) || g.trunkExcluded(r.Account) {
		return
	}
	kind := map[string]string{calls.Ringing: crm.Ringing, calls.Answered: crm.Answered, calls.Transferred: crm.Transferred, calls.Ended: crm.Ended}[e.Kind]
	if kind == "" {
		return
	}
	items := l.conn.Items(crm.Event{Kind: kind, Call: g.crmCall(l, r)})
	if len(items) == 0 {
		return
	}
	if err := l.box.Put(items...); err != nil {
		g.log.Error("CRM operations not queued", "crm", l.conn.Name(), "call_id", r.ID, "error", err)
	}
}

func (g *Gateway) person(l *crmLink, employee, extension string) crm.Person {
	p := crm.Person{Employee: employee, Extension: extension}
	if emp, ok := g.dir.Employee(employee); ok && len(emp.Extensions) > 0 {
		p.Extension = emp.Extensions[0] // the code the CRM knows the user by
	}
	if !l.exclude[employee] {
		p.CRMUser = l.users[employee]
	}
	return p
}

// trunkExcluded reports whether an account's calls stay out of CRMs.
func (g *Gateway) trunkExcluded(account string) bool {
	for _, a := range g.cfg.Upstream.Accounts {
		if a.User == account {
			return a.CRMExclude
		}
	}
	return false
}

func (g *Gateway) autocreate(account string) string {
	for _, a := range g.cfg.Upstream.Accounts {
		if a.User == account && a.Autocreate != "" {
			return a.Autocreate
		}
	}
	return "none"
}

// crmCall is the call as connectors see it, with signed recording links.
func (g *Gateway) crmCall(l *crmLink, r calls.Record) crm.Call {
	c := crm.Call{ID: r.ID, Direction: r.Direction, Origin: r.Origin, Outside: r.Outside, TrunkNumber: r.TrunkNumber, Account: r.Account,
		AnsweredBy: r.AnsweredBy, Started: r.Started, Answered: r.Answered, Ended: r.Ended, WaitSeconds: r.WaitSeconds,
		TalkSeconds: r.TalkSeconds, Result: r.Result, Autocreate: g.autocreate(r.Account)}
	for _, id := range r.Rung {
		c.Rung = append(c.Rung, g.person(l, id, ""))
	}
	for _, leg := range r.Legs {
		cl := crm.Leg{N: leg.N, Person: g.person(l, leg.Employee, leg.Extension), Answered: leg.Answered, Ended: leg.Ended,
			TalkSeconds: leg.TalkSeconds, TransferredFrom: leg.TransferredFrom}
		if leg.Recording != "" && g.links != nil {
			cl.RecordURL, _ = g.links.Link(api.LegID(r.ID, leg.N))
		}
		c.Legs = append(c.Legs, cl)
	}
	return c
}

// crmStatus answers GET /api/v1/crm/status and dead-letter retries.
func (g *Gateway) crmStatus(name string, retry bool) (map[string]outbox.Status, int, error) {
	out := map[string]outbox.Status{}
	for _, l := range g.crm {
		if name != "" && l.conn.Name() != name {
			continue
		}
		if retry {
			n, err := l.box.RetryDead()
			return nil, n, err
		}
		out[l.conn.Name()] = l.box.Status()
	}
	if retry {
		return nil, 0, fmt.Errorf("no CRM %q is enabled", name)
	}
	return out, 0, nil
}
