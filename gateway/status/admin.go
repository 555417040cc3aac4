// Package status is what an operator sees of a running callgate: the
// admin page's snapshot and the Prometheus metrics. It reads the parts
// when asked and decides nothing about calls; a part's own figures stay
// with the part (Collectors), this package gathers them.
package status

import (
	"sort"
	"time"

	"callgate/gateway/api"
	"callgate/gateway/directory"
	"callgate/gateway/recordings"
	"callgate/gateway/storehealth"
	"callgate/sip/guard"
	"callgate/sip/location"
	"callgate/sip/trunk"
)

// Admin is the admin page's view of the parts; it implements api.Admin.
type Admin struct {
	Location   *location.Table
	Directory  *directory.Directory
	Trunk      *trunk.Trunk // nil without upstream accounts
	CRM        api.CRMQueues
	Recordings *recordings.Library
	Store      *storehealth.Health
	Guard      *guard.Guard
	// Calls says whether callgate is draining (stopping, new calls refused).
	Calls interface{ Draining() bool }
}

// AdminView is the admin page's snapshot: registered devices with their
// employee, upstream accounts, CRM queues, recording and database disks,
// and SIP bans in force.
func (a *Admin) AdminView() api.AdminView {
	now := time.Now()
	v := api.AdminView{Phones: []api.AdminPhone{}, Upstream: []trunk.Status{}, CRM: a.CRM.Queues(), Bans: a.Guard.Bans()}
	for _, b := range a.Location.All(now) {
		p := api.AdminPhone{Extension: b.AOR, Source: b.Source, Transport: string(b.Transport), UserAgent: b.UserAgent, Expires: b.Expires, Since: b.Since}
		if e, ok := a.Directory.ByExtension(b.AOR); ok {
			p.Employee = e.ID
		}
		v.Phones = append(v.Phones, p)
	}
	sort.Slice(v.Phones, func(i, j int) bool { return v.Phones[i].Extension < v.Phones[j].Extension })
	if a.Trunk != nil {
		v.Upstream = a.Trunk.Statuses()
	}
	v.Recordings = a.Recordings.Usage()
	v.Store = a.Store.View()
	v.Draining = a.Calls != nil && a.Calls.Draining()
	if v.Bans == nil {
		v.Bans = []guard.Ban{}
	}
	return v
}

// Unban lifts a SIP security ban.
func (a *Admin) Unban(source string) bool { return a.Guard.Unban(source) }
