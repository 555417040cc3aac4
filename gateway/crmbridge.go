package gateway

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"callgate/crm"
	"callgate/crm/outbox"
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
	// unsubscribe closes events, ending the loop that drains them.
	unsubscribe func()
	// register runs once at start (RetailCRM's module upsert), watch for
	// as long as callgate runs (Megaplan's client poll); either may be nil.
	register func(context.Context) error
	watch    func(context.Context)
	// responsible answers smart routing: the employee for a phone.
	responsible func(ctx context.Context, phone string) (string, error)
}

// newCRM sets up the enabled connectors, their outboxes and metrics, and
// smart routing over them.
func (g *Gateway) newCRM() error {
	if !g.cfg.CRM.RetailCRM.Enabled && !g.cfg.CRM.Megaplan.Enabled {
		return nil
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "callgate_crm_requests_total", Help: "Requests to CRMs by response code."}, []string{"crm", "code"})
	g.prom.MustRegister(requests)
	if g.cfg.CRM.RetailCRM.Enabled {
		if err := g.newRetailCRM(requests); err != nil {
			return err
		}
	}
	if g.cfg.CRM.Megaplan.Enabled {
		if err := g.newMegaplan(requests); err != nil {
			return err
		}
	}
	resp := newResponsible(g.responsibleLookup, g.cfg.Routing.CRMBudget.D(), g.cfg.Routing.CacheTTL.D())
	g.router.Responsible = resp.Who
	g.router.ResponsibleTimeout = g.cfg.Routing.ResponsibleTimeout.D()
	return nil
}

// responsibleLookup asks every CRM at once; the first in configuration order
// that names a mapped, not excluded employee wins.
func (g *Gateway) responsibleLookup(ctx context.Context, phone string) (string, error) {
	type answer struct {
		employee string
		err      error
	}
	answers := make([]chan answer, len(g.crm))
	for i, l := range g.crm {
		answers[i] = make(chan answer, 1)
		go func() {
			emp, err := l.responsible(ctx, phone)
			if l.exclude[emp] {
				emp = ""
			}
			answers[i] <- answer{emp, err}
		}()
	}
	var errs []error
	for _, ch := range answers {
		a := <-ch
		if a.employee != "" {
			return a.employee, nil
		}
		if a.err != nil {
			errs = append(errs, a.err)
		}
	}
	if len(errs) == len(g.crm) {
		return "", errors.Join(errs...)
	}
	return "", nil
}

// addCRM opens a connector's outbox and subscribes it to call events. The
// first time a connector is enabled is kept: calls from before are never
// sent to it.
func (g *Gateway) addCRM(l *crmLink, retryMax time.Duration, exclude []string) error {
	name := l.conn.Name()
	since, err := g.store.Once("crm."+name+".since", []byte(strconv.FormatInt(time.Now().UnixNano(), 10)))
	if err != nil {
		return err
	}
	sinceNS, _ := strconv.ParseInt(string(since), 10, 64)
	l.since = time.Unix(0, sinceNS)
	l.box, err = outbox.Open(g.store, name, l.conn, outbox.Options{MaxBackoff: retryMax, Log: g.log.With("component", "crm"), OnResult: func(it *outbox.Item, err error) {
		if err != nil {
			g.log.Warn("CRM delivery failed", "crm", name, "call_id", it.Call, "kind", it.Kind, "attempts", it.Attempts+1, "error", err)
		}
	}})
	if err != nil {
		return err
	}
	l.exclude = map[string]bool{}
	for _, id := range exclude {
		l.exclude[id] = true
	}
	l.events, l.unsubscribe = g.calls.bus.Subscribe(4096)
	g.crm = append(g.crm, l)
	box := l.box
	g.prom.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_crm_outbox_depth", Help: "CRM operations waiting to be delivered.", ConstLabels: prometheus.Labels{"crm": name}},
			func() float64 { return float64(box.Status().Depth) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_crm_dead_letters", Help: "CRM operations the CRM refused for good.", ConstLabels: prometheus.Labels{"crm": name}},
			func() float64 { return float64(box.Status().Dead) }),
	)
	return nil
}

// runCRM starts the outbox workers, the module registration and the loops
// turning call events into CRM operations.
func (g *Gateway) runCRM(ctx context.Context) {
	for _, l := range g.crm {
		g.crmWG.Add(4)
		go func() { defer g.crmWG.Done(); l.box.Run(ctx) }()
		go func() {
			defer g.crmWG.Done()
			if l.watch != nil {
				l.watch(ctx)
			}
		}()
		go func() {
			defer g.crmWG.Done()
			if l.register == nil {
				return
			}
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
			defer g.crmWG.Done()
			// Not ended by ctx: the calls hung up at shutdown publish
			// their last events after it, and those must reach the outbox.
			for e := range l.events {
				g.toCRM(l, e)
			}
		}()
	}
}

// stopCRM queues the events already published and waits for the CRM loops,
// outbox workers, watchers and registrations to end, so that nothing
// touches the store after it closes. The call model must be closed first:
// no event comes after that.
func (g *Gateway) stopCRM() {
	for _, l := range g.crm {
		l.unsubscribe()
	}
	g.crmWG.Wait()
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
	c := g.crmCall(l, r)
	if t := r.Tracking; t != nil && t.Dynamic && t.Medium == "" && g.track != nil && kind == crm.Ringing {
		// The popup may wait a moment for the visitor's UTM marks; the
		// call does not (the lookup started when it arrived).
		if v := g.track.Wait(r.ID); v != nil {
			c.Tracking = visited(t.Number, v)
		}
	}
	items := l.conn.Items(crm.Event{Kind: kind, Call: c})
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
		TalkSeconds: r.TalkSeconds, Result: r.Result, Autocreate: g.autocreate(r.Account), Tracking: r.Tracking}
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

// clientLookup asks every CRM that can look callers up, at once; the first
// in configuration order that knows the number answers.
func (g *Gateway) clientLookup(ctx context.Context, phone string) (*crm.Client, error) {
	if n, err := routing.Normalize(phone, g.cfg.Calls.DefaultRegion); err == nil {
		phone = n
	}
	type answer struct {
		c   *crm.Client
		err error
	}
	var chans []chan answer
	for _, l := range g.crm {
		f, ok := l.conn.(crm.ClientFinder)
		if !ok {
			continue
		}
		ch := make(chan answer, 1)
		chans = append(chans, ch)
		go func() {
			c, err := f.Client(ctx, phone)
			ch <- answer{c, err}
		}()
	}
	var errs []error
	for _, ch := range chans {
		a := <-ch
		if a.c != nil {
			return a.c, nil
		}
		if a.err != nil {
			errs = append(errs, a.err)
		}
	}
	if len(chans) > 0 && len(errs) == len(chans) {
		return nil, errors.Join(errs...)
	}
	return nil, nil
}
