package crmlink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"callgate/crm/megaplan"
	"callgate/crm/retailcrm"
	"callgate/gateway/calls"
	"callgate/gateway/config"
	"callgate/gateway/routing"

	"github.com/prometheus/client_golang/prometheus"
)

// retailClientID is where RetailCRM's clientId is kept: made once, sent at
// registration, and what its makeCallUrl requests prove themselves with.
const retailClientID = "crm.retailcrm.client_id"

// addRetailCRM sets up the RetailCRM connector.
func (l *Link) addRetailCRM(cfg *config.Config, requests *prometheus.CounterVec) error {
	r := cfg.CRM.RetailCRM
	loc := r.TimeZone.Location()
	m := newRetailMaps(cfg)
	random := make([]byte, 16)
	_, _ = rand.Read(random)
	clientID, err := l.deps.Store.Once(retailClientID, []byte(hex.EncodeToString(random)))
	if err != nil {
		return fmt.Errorf("retailcrm client id: %w", err)
	}
	conn := retailcrm.New(retailcrm.Config{URL: r.URL, APIKey: r.APIKey, Site: r.Site, ModuleCode: r.ModuleCode, Location: loc,
		PublicURL: cfg.HTTP.PublicURL, ClientID: string(clientID), Users: m.codes, ExternalPhones: m.phones, Sites: m.sites,
		OnRequest: func(code string) { requests.WithLabelValues("retailcrm", code).Inc() }}, nil)
	l.retailUsers = m.byUser
	c := &connector{conn: conn, users: m.users, register: conn.Register, noRecordings: !r.SendRecordings,
		responsible: func(ctx context.Context, phone string) (string, error) {
			u, err := conn.Manager(ctx, phone)
			return l.retailUser(u), err
		}}
	c.reload = l.retailReload(c, conn, m)
	return l.add(c, r.RetryMax.D(), r.Exclude)
}

// addMegaplan sets up the Megaplan connector and its client watcher.
func (l *Link) addMegaplan(cfg *config.Config, requests *prometheus.CounterVec) error {
	m := cfg.CRM.Megaplan
	mp := newMegaplanMaps(cfg)
	conn := megaplan.New(megaplan.Config{URL: m.URL, Username: m.Username, Password: m.Password, RPS: m.RPS, Programs: mp.programs,
		OnRequest: func(code string) { requests.WithLabelValues("megaplan", code).Inc() }, Log: l.log}, nil)
	l.megaplanUsers = mp.byUser
	c := &connector{conn: conn, users: mp.users, noRecordings: !m.SendRecordings,
		responsible: func(ctx context.Context, phone string) (string, error) {
			id, err := conn.Responsible(ctx, phone)
			l.mu.RLock()
			defer l.mu.RUnlock()
			return l.megaplanUsers[id], err
		}}
	c.reload = l.megaplanReload(c, conn)
	if err := l.add(c, m.RetryMax.D(), m.Exclude); err != nil {
		return err
	}
	const mark = "crm.megaplan.clients_seen"
	st := l.deps.Store
	c.watch = func(ctx context.Context) {
		conn.WatchClients(ctx, megaplan.Watch{Every: m.Poll.D(), Log: l.deps.Log, Put: c.box.Put,
			Seen: func() time.Time {
				v, _ := st.State(mark)
				t, _ := time.Parse(time.RFC3339Nano, string(v))
				return t
			},
			Save:  func(t time.Time) error { return st.SetState(mark, []byte(t.Format(time.RFC3339Nano))) },
			Calls: l.megaplanCalls(c)})
	}
	return nil
}

// megaplanCalls lists the providerIds of the calls with a number since a
// time, as the Megaplan connector sent them.
func (l *Link) megaplanCalls(c *connector) func(string, time.Time) []string {
	return func(phone string, since time.Time) []string {
		n, err := routing.Normalize(phone, l.region)
		if err != nil {
			return nil
		}
		since = maxTime(since, c.since)
		var out []string
		var to time.Time
		for {
			recs, err := l.deps.Calls.List(calls.Filter{From: since, To: to, Number: n, Limit: 500})
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
