package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"time"

	"callgate/crm/megaplan"
	"callgate/crm/retailcrm"
	"callgate/gateway/calls"
	"callgate/gateway/routing"

	"github.com/prometheus/client_golang/prometheus"
)

// newRetailCRM sets up the RetailCRM connector.
func (g *Gateway) newRetailCRM(requests *prometheus.CounterVec) error {
	r := g.cfg.CRM.RetailCRM
	loc, _ := time.LoadLocation(r.TimeZone)
	users, extUsers, byUser := map[string]int{}, map[string]int{}, map[int]string{}
	for _, e := range g.cfg.Employees {
		if e.RetailCRMUser > 0 {
			users[e.ID] = e.RetailCRMUser
			extUsers[e.Extensions[0]] = e.RetailCRMUser
			byUser[e.RetailCRMUser] = e.ID
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
	conn := retailcrm.New(retailcrm.Config{URL: r.URL, APIKey: r.APIKey, Site: r.Site, ModuleCode: r.ModuleCode, Location: loc,
		PublicURL: g.cfg.HTTP.PublicURL, ClientID: string(clientID), Users: extUsers, ExternalPhones: phones,
		OnRequest: func(code string) { requests.WithLabelValues("retailcrm", code).Inc() }}, nil)
	return g.addCRM(&crmLink{conn: conn, users: users, register: conn.Register,
		responsible: func(ctx context.Context, phone string) (string, error) {
			u, err := conn.Manager(ctx, phone)
			return byUser[u], err
		}}, r.RetryMax.D(), r.Exclude)
}

// newMegaplan sets up the Megaplan connector and its client watcher.
func (g *Gateway) newMegaplan(requests *prometheus.CounterVec) error {
	m := g.cfg.CRM.Megaplan
	users, byUser := map[string]int{}, map[string]string{}
	for _, e := range g.cfg.Employees {
		if e.MegaplanUser > 0 {
			users[e.ID] = e.MegaplanUser
			byUser[strconv.Itoa(e.MegaplanUser)] = e.ID
		}
	}
	programs := map[string]int{}
	for _, a := range g.cfg.Upstream.Accounts {
		if a.Program > 0 {
			programs[a.User] = a.Program
		}
	}
	conn := megaplan.New(megaplan.Config{URL: m.URL, Username: m.Username, Password: m.Password, RPS: m.RPS, Programs: programs,
		OnRequest: func(code string) { requests.WithLabelValues("megaplan", code).Inc() }}, nil)
	l := &crmLink{conn: conn, users: users,
		responsible: func(ctx context.Context, phone string) (string, error) {
			id, err := conn.Responsible(ctx, phone)
			return byUser[id], err
		}}
	if err := g.addCRM(l, m.RetryMax.D(), m.Exclude); err != nil {
		return err
	}
	const mark = "crm.megaplan.clients_seen"
	l.watch = func(ctx context.Context) {
		conn.WatchClients(ctx, megaplan.Watch{Every: m.Poll.D(), Log: g.log, Put: l.box.Put,
			Seen: func() time.Time {
				v, _ := g.store.State(mark)
				t, _ := time.Parse(time.RFC3339Nano, string(v))
				return t
			},
			Save:  func(t time.Time) error { return g.store.SetState(mark, []byte(t.Format(time.RFC3339Nano))) },
			Calls: g.megaplanCalls(l)})
	}
	return nil
}

// megaplanCalls lists the providerIds of the calls with a number since a
// time, as the Megaplan connector sent them.
func (g *Gateway) megaplanCalls(l *crmLink) func(string, time.Time) []string {
	return func(phone string, since time.Time) []string {
		n, err := routing.Normalize(phone, g.cfg.Calls.DefaultRegion)
		if err != nil {
			return nil
		}
		since = maxTime(since, l.since)
		var out []string
		var to time.Time
		for {
			recs, err := g.calls.store.List(calls.Filter{From: since, To: to, Number: n, Limit: 500})
			if err != nil || len(recs) == 0 {
				return out
			}
			for _, r := range recs {
				if r.Internal || r.Outside != n {
					continue
				}
				if len(r.Legs) == 0 {
					out = append(out, megaplan.ProviderID(r.ID, 1))
				}
				for _, leg := range r.Legs {
					out = append(out, megaplan.ProviderID(r.ID, leg.N))
				}
			}
			if len(recs) < 500 || len(out) > 1000 {
				return out
			}
			to = recs[len(recs)-1].Started
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
