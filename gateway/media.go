package gateway

import (
	"context"
	"net/http"
	"net/netip"
	"time"

	"callgate/gateway/config"
	"callgate/gateway/routing"
	"callgate/gateway/tracking"
	"callgate/media/record"
	"callgate/media/relay"
	"callgate/sip/b2bua"

	"github.com/emiago/sipgo/sip"
)

// newMedia builds the relay, the recorder, the call model and the B2BUA,
// repairs what a crash left behind, and installs the call handlers.
func (g *Gateway) newMedia() error {
	cfg := g.cfg
	lo, hi, _ := config.ParsePortRange(cfg.Media.RTPPorts)
	bind := netip.MustParseAddr(cfg.Media.Bind)
	var err error
	g.relay, err = relay.New(relay.Config{Bind: bind, PortMin: lo, PortMax: hi, Timeout: cfg.Media.Timeout.D(),
		OnTimeout: func(id string) {
			g.log.Warn("media timeout: hanging up", "call_id", id)
			g.b2b.Hangup(id, "media timeout")
		}})
	if err != nil {
		return err
	}
	minFree, _ := config.ParseSize(cfg.Recording.MinFree)
	g.recorder = &record.Recorder{Dir: cfg.Recording.Dir, MinFree: minFree, Log: g.log.With("component", "recorder")}
	if repaired, err := record.RepairActive(cfg.Recording.Dir); err != nil {
		g.log.Warn("repairing interrupted recordings", "error", err)
	} else if len(repaired) > 0 {
		g.log.Info("recordings interrupted by a crash repaired", "count", len(repaired))
	}
	if m := cfg.Mango; m.APIKey != "" {
		api := &tracking.Mango{URL: m.URL, Key: m.APIKey, Salt: m.APISalt, HTTP: &http.Client{Timeout: 10 * time.Second}}
		g.track = tracking.NewTracker(api.Visitor, m.Budget.D())
	}
	g.calls = newCallModel(g)
	if ids, err := g.calls.Store().MarkInterrupted(time.Now()); err != nil {
		// A full disk must not keep callgate down: the records stay open
		// until a later start can write them.
		g.log.Error("closing calls interrupted by a stop failed; retried at the next start", "error", err)
	} else if len(ids) > 0 {
		g.log.Warn("calls interrupted by a stop were closed", "count", len(ids))
	}

	phoneIP := netip.MustParseAddr(g.sip.advertise)
	if cfg.Media.Advertise != "" {
		phoneIP = netip.MustParseAddr(cfg.Media.Advertise)
	}
	upIP := phoneIP
	if cfg.Media.UpstreamAdvertise != "" {
		upIP = netip.MustParseAddr(cfg.Media.UpstreamAdvertise)
	}
	accounts := map[string]bool{}
	for _, a := range cfg.Upstream.Accounts {
		accounts[a.User] = true
	}
	target, tr := "", "udp"
	if t := cfg.Upstream.Proxy; t != "" {
		la, _ := config.ParseListen(t)
		target, tr = la.Addr.String(), la.Transport
	} else if t := cfg.Upstream.Registrar; t != "" {
		la, _ := config.ParseListen(t)
		target, tr = la.Addr.String(), la.Transport
	}
	host, port, _ := sip.ParseAddr(g.sip.contactHostPort("udp"))
	if _, ok := g.sip.locals["udp"]; !ok {
		host, port, _ = sip.ParseAddr(g.sip.contactHostPort("tcp"))
	}
	local := ""
	if p, ok := g.sip.locals["udp"]; ok {
		local = p.String()
	}
	g.router = routing.New(cfg, g.dir)
	g.router.Log = g.log.With("component", "routing")
	g.b2b = b2bua.New(b2bua.Config{
		Domain: cfg.Upstream.Domain, LocalDomain: host, Upstream: target, UpstreamTr: tr, Trusted: g.sip.upstream, Accounts: accounts,
		PhoneMediaIP: phoneIP, UpstreamMedia: upIP, LocalUDP: local,
		Contact:           sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "callgate", Host: host, Port: port}},
		TransportContacts: g.sip.transportContacts(),
		RingTimeout:       cfg.Calls.RingTimeout.D(), InternalRecord: cfg.Recording.Internal,
	}, g.sip.client, g.router, g.reg.Location(), g.reg, relayMedia{g.relay}, g.calls, g.log.With("component", "b2bua"))
	g.b2b.Register(g.sip.srv, g.sip.admit)
	return nil
}

// janitorLoop deletes recordings past retention, hourly.
func (g *Gateway) janitorLoop(ctx context.Context) {
	for {
		if deleted, err := record.Sweep(g.cfg.Recording.Dir, g.cfg.Recording.Retention.D(), time.Now()); err != nil {
			g.log.Warn("recording janitor", "error", err)
		} else if len(deleted) > 0 {
			g.log.Info("old recordings deleted", "count", len(deleted))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Hour):
		}
	}
}
