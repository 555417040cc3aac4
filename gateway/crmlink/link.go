// Package crmlink connects callgate's calls to the CRMs. It builds the
// enabled connectors from the configuration, turns call events into their
// operations and queues them in each CRM's outbox, asks the CRMs who a
// client's manager is (smart routing) and who a caller is (the console's
// popup), and takes RetailCRM's click-to-call requests.
//
// The rules of what a CRM sees live here: internal calls never go to a CRM,
// nor calls on a trunk excluded from CRMs, nor calls that started before the
// CRM was first enabled; an employee excluded from a CRM, or not mapped to
// one of its users, is never named to it.
//
// The link runs whether or not the HTTP API does: only RetailCRM's
// callbacks and the recording links need the API.
package crmlink

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"callgate/crm"
	"callgate/crm/outbox"
	"callgate/gateway/api"
	"callgate/gateway/calls"
	"callgate/gateway/config"
	"callgate/gateway/directory"
	"callgate/gateway/store"
	"callgate/gateway/tracking"
	"callgate/sip/b2bua"

	"github.com/prometheus/client_golang/prometheus"
)

// Directory is what the link asks of the employee directory.
type Directory interface {
	Employee(id string) (*directory.Employee, bool)
	ByExtension(ext string) (*directory.Employee, bool)
}

// Linker signs a link to a leg's recording, valid until the time it
// returns.
// Presence records an employee's status: free, busy, dinner or break.
type Presence interface {
	Set(employee, status string) error
}

// Linker signs links to recordings.
type Linker interface {
	Lasting(leg string) string
}

// Deps are the parts the link works with.
type Deps struct {
	// Store keeps the outboxes, each CRM's first-enabled time and
	// RetailCRM's client id.
	Store *store.Store
	// Calls is the call history (Megaplan's client watcher reads it).
	Calls *calls.Store
	// Events are the call events to deliver.
	Events *calls.Bus
	// Directory names employees by their first extension to the CRMs.
	Directory Directory
	// Tracker finds the website visit behind a call to a dynamic
	// call-tracking number (nil: none configured).
	Tracker *tracking.Tracker
	// Links signs links to recordings (nil without the HTTP API: the
	// CRMs get no recording links).
	Links Linker
	// Presence takes the employees' statuses a CRM reports (RetailCRM's
	// changeUserStatusUrl); nil: they are ignored.
	Presence Presence
	// Metrics takes callgate_crm_requests_total and each outbox's depth
	// and dead letters.
	Metrics prometheus.Registerer
	// Log is told of failed deliveries and registrations (nil:
	// slog.Default()).
	Log *slog.Logger
}

// Link is the enabled CRMs, in configuration order (RetailCRM, then
// Megaplan), and the rules between the calls and them.
type Link struct {
	deps    Deps
	log     *slog.Logger
	region  string
	crms    []*connector
	resp    *responsible // nil: no CRM enabled
	respFor time.Duration

	// mu guards the configuration's mappings, which Reload replaces:
	// trunks, retailUsers, megaplanUsers and each connector's users and
	// exclude.
	mu     sync.RWMutex
	trunks map[string]config.Account // upstream accounts by user
	// retailUsers are the employees by RetailCRM user (nil: RetailCRM
	// is not enabled); megaplanUsers by Megaplan employee id.
	retailUsers   map[int]string
	megaplanUsers map[string]string
	// run is Start's context, for the work a reload starts (nil before
	// Start); stopped is set by Stop.
	run     context.Context
	stopped bool

	events <-chan calls.Event
	// unsubscribe closes events, ending the loop that drains them.
	unsubscribe func()
	wg          sync.WaitGroup // everything Start starts

	// lookups share the CRMs' answers about a number between the call's
	// record and the console's card asking at the same ring.
	lookupMu sync.Mutex
	lookups  map[string]*lookup
}

// connector is one enabled CRM: its connector, its outbox and its rules.
type connector struct {
	conn    crm.Connector
	box     *outbox.Outbox
	since   time.Time       // calls that started earlier are not sent
	users   map[string]int  // employee -> CRM user
	exclude map[string]bool // employees whose calls are never sent
	// register runs once at start (RetailCRM's module upsert), watch for
	// as long as callgate runs (Megaplan's client poll); either may be nil.
	register func(context.Context) error
	watch    func(context.Context)
	// responsible answers smart routing: the employee for a phone.
	responsible func(ctx context.Context, phone string) (string, error)
	// reload takes a reloaded configuration's mappings (nil: none).
	reload func(*config.Config)
	// noRecordings keeps recording links out of this CRM
	// (send_recordings = false).
	noRecordings bool
}

// New sets up the enabled connectors, their outboxes and metrics, and
// smart routing over them. With no CRM enabled the link does nothing.
func New(cfg *config.Config, d Deps) (*Link, error) {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	l := &Link{deps: d, log: d.Log.With("component", "crm"), region: cfg.Calls.DefaultRegion, trunks: map[string]config.Account{}}
	for _, a := range cfg.Upstream.Accounts {
		l.trunks[a.User] = a
	}
	if !cfg.CRM.RetailCRM.Enabled && !cfg.CRM.Megaplan.Enabled {
		return l, nil
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "callgate_crm_requests_total", Help: "Requests to CRMs by response code."}, []string{"crm", "code"})
	d.Metrics.MustRegister(requests)
	if cfg.CRM.RetailCRM.Enabled {
		if err := l.addRetailCRM(cfg, requests); err != nil {
			return nil, err
		}
	}
	if cfg.CRM.Megaplan.Enabled {
		if err := l.addMegaplan(cfg, requests); err != nil {
			return nil, err
		}
	}
	l.resp = newResponsible(l.responsibleLookup, cfg.Routing.CRMBudget.D(), cfg.Routing.CacheTTL.D())
	l.respFor = cfg.Routing.ResponsibleTimeout.D()
	// Subscribed now, not at Start: the calls of the moments between the
	// SIP listeners opening and Start are not lost.
	l.events, l.unsubscribe = d.Events.Subscribe(4096)
	return l, nil
}

// Enabled reports whether any CRM is enabled.
func (l *Link) Enabled() bool { return len(l.crms) > 0 }

// SmartRouting is the responsible-manager lookup for the router and how
// long the manager rings first; nil when no CRM is enabled.
func (l *Link) SmartRouting() (func(phone string) string, time.Duration) {
	if l.resp == nil {
		return nil, 0
	}
	return l.resp.Who, l.respFor
}

// add opens a connector's outbox. The first time a connector is enabled is
// kept: calls from before are never sent to it.
func (l *Link) add(c *connector, retryMax time.Duration, exclude []string) error {
	name := c.conn.Name()
	since, err := l.deps.Store.Once("crm."+name+".since", []byte(strconv.FormatInt(time.Now().UnixNano(), 10)))
	if err != nil {
		return fmt.Errorf("%s: first-enabled time: %w", name, err)
	}
	sinceNS, _ := strconv.ParseInt(string(since), 10, 64)
	c.since = time.Unix(0, sinceNS)
	c.box, err = outbox.Open(l.deps.Store, name, c.conn, outbox.Options{MaxBackoff: retryMax, Log: l.log, OnResult: func(it *outbox.Item, err error) {
		if err != nil {
			l.log.Warn("CRM delivery failed", "crm", name, "call_id", it.Call, "kind", it.Kind, "attempts", it.Attempts+1, "error", err)
		}
	}})
	if err != nil {
		return fmt.Errorf("%s outbox: %w", name, err)
	}
	c.exclude = map[string]bool{}
	for _, id := range exclude {
		c.exclude[id] = true
	}
	l.crms = append(l.crms, c)
	box := c.box
	l.deps.Metrics.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_crm_outbox_depth", Help: "CRM operations waiting to be delivered.", ConstLabels: prometheus.Labels{"crm": name}},
			func() float64 { return float64(box.Status().Depth) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_crm_dead_letters", Help: "CRM operations the CRM refused for good.", ConstLabels: prometheus.Labels{"crm": name}},
			func() float64 { return float64(box.Status().Dead) }),
	)
	return nil
}

// Start starts the outbox workers, the module registration, the watchers
// and the loop turning call events into CRM operations. It returns at once;
// Stop ends it all.
func (l *Link) Start(ctx context.Context) {
	if len(l.crms) == 0 {
		return
	}
	l.mu.Lock()
	l.run = ctx
	l.mu.Unlock()
	for _, c := range l.crms {
		l.wg.Add(3)
		go func() { defer l.wg.Done(); c.box.Run(ctx) }()
		go func() {
			defer l.wg.Done()
			if c.watch != nil {
				c.watch(ctx)
			}
		}()
		go func() {
			defer l.wg.Done()
			if c.register != nil {
				l.register(ctx, c)
			}
		}()
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		// Not ended by ctx: the calls hung up at shutdown publish their
		// last events after it, and those must reach the outboxes.
		for e := range l.events {
			l.deliver(e)
		}
	}()
}

// register retries a connector's registration until the CRM takes it: it
// only says what callgate offers, calls are delivered regardless.
func (l *Link) register(ctx context.Context, c *connector) {
	for wait := time.Second; ctx.Err() == nil; wait = min(2*wait, 5*time.Minute) {
		err := c.register(ctx)
		if err == nil {
			return
		}
		l.log.Warn("CRM registration failed", "crm", c.conn.Name(), "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// Stop queues the events already published and waits for the delivery
// loop, outbox workers, watchers and registrations to end, so that nothing
// touches the store after it closes. The call model must be closed first:
// no event comes after that. Start's context must be done.
func (l *Link) Stop() {
	l.mu.Lock()
	l.stopped = true // a reload starts nothing from now on
	l.mu.Unlock()
	if l.unsubscribe != nil {
		l.unsubscribe()
	}
	l.wg.Wait()
}

// deliver queues a call event's operations in every CRM that may see it.
func (l *Link) deliver(e calls.Event) {
	for _, op := range l.operations(e) {
		items := op.to.conn.Items(op.event)
		if len(items) == 0 {
			continue
		}
		if err := op.to.box.Put(items...); err != nil {
			l.log.Error("CRM operations not queued", "crm", op.to.conn.Name(), "call_id", e.Record.ID, "error", err)
		}
	}
}

// operation is a call event for one CRM.
type operation struct {
	to    *connector
	event crm.Event
}

// crmKinds maps call events to the connectors' vocabulary: the one place
// the two meet.
var crmKinds = map[b2bua.EventKind]string{
	b2bua.EventRinging:     crm.Ringing,
	b2bua.EventAnswered:    crm.Answered,
	b2bua.EventTransferred: crm.Transferred,
	b2bua.EventEnded:       crm.Ended,
}

// operations applies the rules to a call event: internal calls never, calls
// on a trunk excluded from CRMs never, calls from before a connector was
// enabled never to that connector; excluded employees as if unmapped. The
// call is converted once; each CRM gets its own people.
func (l *Link) operations(e calls.Event) []operation {
	l.mu.RLock()
	defer l.mu.RUnlock()
	r := e.Record
	kind, ok := crmKinds[e.Kind]
	if !ok || r.Internal || l.trunks[r.Account].CRMExclude {
		return nil
	}
	var ops []operation
	var base *crm.Call
	for _, c := range l.crms {
		if r.Started.Before(c.since) {
			continue
		}
		if base == nil {
			base = l.call(r, kind)
		}
		ops = append(ops, operation{to: c, event: crm.Event{Kind: kind, Call: c.people(base, r, l.deps.Directory)}})
	}
	return ops
}

// call is the record as every connector sees it, with signed recording
// links, before its people are named in a CRM's terms.
func (l *Link) call(r *calls.Record, kind string) *crm.Call {
	autocreate := l.trunks[r.Account].Autocreate
	if autocreate == "" {
		autocreate = "none"
	}
	c := &crm.Call{ID: r.ID, Direction: r.Direction, Origin: r.Origin, Outside: r.Outside, TrunkNumber: r.TrunkNumber, Account: r.Account,
		AnsweredBy: r.AnsweredBy, Started: r.Started, Answered: r.Answered, Ended: r.Ended, WaitSeconds: r.WaitSeconds,
		TalkSeconds: r.TalkSeconds, Result: r.Result, Autocreate: autocreate, Tracking: r.Tracking}
	if t := r.Tracking; t != nil && t.Dynamic && t.Medium == "" && l.deps.Tracker != nil && kind == crm.Ringing {
		// The popup may wait a moment for the visitor's UTM marks; the
		// call does not (the lookup started when it arrived).
		if v := l.deps.Tracker.Wait(r.ID); v != nil {
			c.Tracking = &crm.Tracking{Number: t.Number, Marks: *v, Dynamic: true}
		}
	}
	for _, leg := range r.Legs {
		cl := crm.Leg{N: leg.N, Answered: leg.Answered, Ended: leg.Ended, TalkSeconds: leg.TalkSeconds, TransferredFrom: leg.TransferredFrom}
		if leg.Recording != "" && l.deps.Links != nil {
			cl.RecordURL = l.deps.Links.Lasting(api.LegID(r.ID, leg.N))
		}
		c.Legs = append(c.Legs, cl)
	}
	return c
}

// people is base with the rung employees and the legs' employees named as
// this CRM knows them.
func (c *connector) people(base *crm.Call, r *calls.Record, dir Directory) crm.Call {
	out := *base
	out.Rung = nil
	for _, id := range r.Rung {
		out.Rung = append(out.Rung, c.person(dir, id, ""))
	}
	out.Legs = append([]crm.Leg(nil), base.Legs...)
	for i, leg := range r.Legs {
		out.Legs[i].Person = c.person(dir, leg.Employee, leg.Extension)
		if c.noRecordings {
			out.Legs[i].RecordURL = ""
		}
	}
	return out
}

// person names an employee to the CRM: by their first extension (the code
// the CRM knows the user by) and their CRM user, unless excluded.
func (c *connector) person(dir Directory, employee, extension string) crm.Person {
	p := crm.Person{Employee: employee, Extension: extension}
	if emp, ok := dir.Employee(employee); ok && len(emp.Extensions) > 0 {
		p.Extension = emp.Extensions[0]
	}
	if !c.exclude[employee] {
		p.CRMUser = c.users[employee]
	}
	return p
}

// Queues reports each enabled CRM's delivery queue.
func (l *Link) Queues() map[string]outbox.Status {
	out := map[string]outbox.Status{}
	for _, c := range l.crms {
		out[c.conn.Name()] = c.box.Status()
	}
	return out
}

// RetryDead puts a CRM's dead letters back in its queue and says how many.
func (l *Link) RetryDead(name string) (int, error) {
	for _, c := range l.crms {
		if c.conn.Name() == name {
			return c.box.RetryDead()
		}
	}
	return 0, fmt.Errorf("no CRM %q is enabled", name)
}

// Outboxes are the enabled CRMs' outboxes.
func (l *Link) Outboxes() []*outbox.Outbox {
	var out []*outbox.Outbox
	for _, c := range l.crms {
		out = append(out, c.box)
	}
	return out
}

// statusSender is a connector that can hold an employee's status
// (RetailCRM).
type statusSender interface {
	StatusItem(userID int, status string, at time.Time) outbox.Item
}

// UserStatus tells the CRMs that keep statuses that an employee set theirs
// in the console; it is queued like a call event and survives outages.
func (l *Link) UserStatus(employee, status string) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	for _, c := range l.crms {
		s, ok := c.conn.(statusSender)
		if !ok || c.exclude[employee] || c.users[employee] == 0 {
			continue
		}
		if err := c.box.Put(s.StatusItem(c.users[employee], status, time.Now())); err != nil {
			return fmt.Errorf("status of %s for %s: %w", employee, c.conn.Name(), err)
		}
	}
	return nil
}
