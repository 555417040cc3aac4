package crmlink

import (
	"maps"
	"slices"
	"strconv"

	"callgate/crm/megaplan"
	"callgate/crm/retailcrm"
	"callgate/gateway/config"
	"callgate/gateway/routing"
)

// Reload takes a reloaded configuration's mappings: the upstream accounts'
// rules (crm_exclude, autocreate, Megaplan's program), which employee is
// which CRM user, and who is excluded from each CRM. The next event is
// delivered by them; an event already in an outbox keeps what it was
// given. Smart routing forgets its cached answers, which name employees
// by the old mapping. RetailCRM is told the new extensions and trunk
// numbers when they changed. Which CRMs are enabled, and how to reach
// them, needs a restart.
func (l *Link) Reload(cfg *config.Config) {
	trunks := map[string]config.Account{}
	for _, a := range cfg.Upstream.Accounts {
		trunks[a.User] = a
	}
	l.mu.Lock()
	l.trunks = trunks
	l.mu.Unlock()
	for _, c := range l.crms {
		if c.reload != nil {
			c.reload(cfg)
		}
	}
	if l.resp != nil {
		l.resp.forget()
	}
}

// retailMaps are RetailCRM's mappings from the configuration.
type retailMaps struct {
	users   map[string]int    // employee -> RetailCRM user
	codes   map[string]int    // first extension -> RetailCRM user (module's additionalCodes)
	byUser  map[int]string    // RetailCRM user -> employee
	exclude map[string]bool   // employees never named
	phones  []string          // trunk numbers (module's externalPhones)
	sites   map[string]string // trunk number -> its own RetailCRM store
}

func newRetailMaps(cfg *config.Config) retailMaps {
	m := retailMaps{users: map[string]int{}, codes: map[string]int{}, byUser: map[int]string{}, exclude: set(cfg.CRM.RetailCRM.Exclude),
		sites: map[string]string{}}
	for _, e := range cfg.Employees {
		if e.RetailCRMUser > 0 {
			m.users[e.ID] = e.RetailCRMUser
			m.codes[e.Extensions[0]] = e.RetailCRMUser
			m.byUser[e.RetailCRMUser] = e.ID
		}
	}
	for _, a := range cfg.Upstream.Accounts {
		if n, err := routing.Normalize(a.Number, cfg.Calls.DefaultRegion); err == nil {
			m.phones = append(m.phones, n)
			if a.RetailCRMSite != "" {
				m.sites[n] = a.RetailCRMSite
			}
		}
	}
	return m
}

// retailReload is RetailCRM's part of Reload; last is what the module was
// registered with.
func (l *Link) retailReload(c *connector, conn *retailcrm.Connector, last retailMaps) func(*config.Config) {
	return func(cfg *config.Config) {
		m := newRetailMaps(cfg)
		l.mu.Lock()
		c.users, c.exclude, l.retailUsers = m.users, m.exclude, m.byUser
		l.mu.Unlock()
		if maps.Equal(m.codes, last.codes) && slices.Equal(m.phones, last.phones) && maps.Equal(m.sites, last.sites) {
			return
		}
		last = m
		conn.SetCodes(m.codes, m.phones, m.sites)
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.run == nil || l.stopped {
			return // Start registers with what it has now
		}
		ctx := l.run
		l.wg.Add(1)
		go func() { defer l.wg.Done(); l.register(ctx, c) }()
	}
}

// megaplanMaps are Megaplan's mappings from the configuration.
type megaplanMaps struct {
	users    map[string]int    // employee -> Megaplan employee id
	byUser   map[string]string // Megaplan employee id -> employee
	programs map[string]int    // upstream account -> deal scheme
}

func newMegaplanMaps(cfg *config.Config) megaplanMaps {
	m := megaplanMaps{users: map[string]int{}, byUser: map[string]string{}, programs: map[string]int{}}
	for _, e := range cfg.Employees {
		if e.MegaplanUser > 0 {
			m.users[e.ID] = e.MegaplanUser
			m.byUser[strconv.Itoa(e.MegaplanUser)] = e.ID
		}
	}
	for _, a := range cfg.Upstream.Accounts {
		if a.Program > 0 {
			m.programs[a.User] = a.Program
		}
	}
	return m
}

// megaplanReload is Megaplan's part of Reload.
func (l *Link) megaplanReload(c *connector, conn *megaplan.Connector) func(*config.Config) {
	return func(cfg *config.Config) {
		m := newMegaplanMaps(cfg)
		l.mu.Lock()
		c.users, c.exclude, l.megaplanUsers = m.users, set(cfg.CRM.Megaplan.Exclude), m.byUser
		l.mu.Unlock()
		conn.SetPrograms(m.programs)
	}
}

// retailUser is the employee a RetailCRM user is ("" when none).
func (l *Link) retailUser(id int) string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.retailUsers[id]
}

// forget drops every cached answer (a reload changed who is whom).
func (r *responsible) forget() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.cache)
}

func set(list []string) map[string]bool {
	m := map[string]bool{}
	for _, s := range list {
		m[s] = true
	}
	return m
}
