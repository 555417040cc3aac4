package gateway

import (
	"sort"
	"time"

	"callgate/crm/outbox"
	"callgate/gateway/recordings"
	"callgate/gateway/storehealth"
	"callgate/sip/guard"
	"callgate/sip/trunk"
)

// adminView is what the console's admin page shows.
type adminView struct {
	Phones     []phoneView              `json:"phones"`
	Upstream   []trunk.Status           `json:"upstream"`
	CRM        map[string]outbox.Status `json:"crm"`
	Recordings recordings.Usage         `json:"recordings"`
	Store      storehealth.View         `json:"store"` // the database: free space under data_dir, writes waiting
	Bans       []guard.Ban              `json:"bans"`
}

type phoneView struct {
	Extension string    `json:"extension"`
	Employee  string    `json:"employee,omitempty"`
	Source    string    `json:"source"`
	Transport string    `json:"transport"`
	UserAgent string    `json:"user_agent,omitempty"`
	Expires   time.Time `json:"expires"`
	Since     time.Time `json:"since"`
}

// adminStatus is the admin page's snapshot.
func (g *Gateway) adminStatus() any {
	now := time.Now()
	v := adminView{Phones: []phoneView{}, Upstream: []trunk.Status{}, CRM: map[string]outbox.Status{}, Bans: g.guard.Bans()}
	for _, b := range g.reg.Location().All(now) {
		p := phoneView{Extension: b.AOR, Source: b.Source, Transport: string(b.Transport), UserAgent: b.UserAgent, Expires: b.Expires, Since: b.Since}
		if e, ok := g.dir.ByExtension(b.AOR); ok {
			p.Employee = e.ID
		}
		v.Phones = append(v.Phones, p)
	}
	sort.Slice(v.Phones, func(i, j int) bool { return v.Phones[i].Extension < v.Phones[j].Extension })
	if g.trunk != nil {
		v.Upstream = g.trunk.Statuses()
	}
	v.CRM, _, _ = g.crm.Status("", false)
	v.Recordings = g.recs.Usage()
	v.Store = g.health.View()
	if v.Bans == nil {
		v.Bans = []guard.Ban{}
	}
	return v
}
