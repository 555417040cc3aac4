package gateway

import (
	"callgate/gateway/crmlink"
)

// newCRM builds the CRM link over the call model's records and events and
// gives the router its smart routing and the employees' statuses RetailCRM
// reports (changeUserStatusUrl), which keep inbound calls from those away.
// It does not need the HTTP API: without it the CRMs get calls without
// recording links, and RetailCRM's click-to-call has nowhere to call.
func (g *Gateway) newCRM() error {
	deps := crmlink.Deps{Store: g.store, Calls: g.calls.Store(), Events: g.calls.Bus(), Directory: g.dir,
		Tracker: g.track, Metrics: g.prom, Log: g.log, Presence: &g.presence}
	if g.links != nil { // a nil *recordings.Links would be a non-nil Linker
		deps.Links = g.links
	}
	link, err := crmlink.New(g.cfg, deps)
	if err != nil {
		return err
	}
	g.crm = link
	g.calls.NameClients(link.Client)
	g.outboxes = link.Outboxes()
	g.router.Away = g.presence.Away
	if who, first := link.SmartRouting(); who != nil {
		g.router.Responsible = who
		g.router.ResponsibleTimeout = first
	}
	return nil
}
