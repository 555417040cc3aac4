package gateway

import (
	"time"

	"callgate/gateway/callmodel"
	"callgate/gateway/calls"
	"callgate/gateway/dialer"
)

// newCallModel builds the call model the B2BUA reports to.
func newCallModel(g *Gateway) *callmodel.Model {
	cfg := callmodel.Config{Store: calls.NewStore(g.store), Accounts: g.cfg.Upstream.Accounts, Region: g.cfg.Calls.DefaultRegion,
		RecordInternal: g.cfg.Recording.Internal, Tracker: g.track, Log: g.log}
	if g.cfg.Recording.Enabled {
		cfg.Recordings = g.recs
	}
	return callmodel.New(cfg)
}

// newDialer places the calls the API and RetailCRM ask for.
func (g *Gateway) newDialer() *dialer.Dialer {
	return &dialer.Dialer{Calls: g.b2b, Router: g.router, Directory: g.dir,
		Registered:         func(ext string) bool { return len(g.reg.Location().Lookup(ext, time.Now())) > 0 },
		UpstreamRegistered: g.trunk.Registered}
}
