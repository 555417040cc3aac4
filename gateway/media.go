package gateway

import (
	"net/http"
	"net/netip"
	"time"

	"callgate/gateway/config"
	"callgate/gateway/recordings"
	"callgate/gateway/routing"
	"callgate/gateway/tracking"
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
	g.recs = recordings.New(recordings.Config{Enabled: cfg.Recording.Enabled, Dir: cfg.Recording.Dir,
		Retention: cfg.Recording.Retention.D(), MinFree: minFree, Log: g.log})
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

	phoneIP := netip.MustParseAddr(g.sip.Advertise())
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
	host, port, _ := sip.ParseAddr(g.sip.ContactHostPort("udp"))
	local := ""
	if p, ok := g.sip.Local("udp"); ok {
		local = p.String()
	} else {
		host, port, _ = sip.ParseAddr(g.sip.ContactHostPort("tcp"))
	}
	g.router = routing.New(cfg, g.dir)
	g.router.Log = g.log.With("component", "routing")
	g.b2b = b2bua.New(b2bua.Config{
		Domain: cfg.Upstream.Domain, LocalDomain: host, Upstream: target, UpstreamTr: tr, Trusted: g.sip.Trusted(), Accounts: accounts,
		PhoneMediaIP: phoneIP, UpstreamMedia: upIP, LocalUDP: local,
		Contact:           sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "callgate", Host: host, Port: port}},
		TransportContacts: g.sip.TransportContacts(),
		RingTimeout:       cfg.Calls.RingTimeout.D(), InternalRecord: cfg.Recording.Internal,
	}, g.sip.Client(), g.router, g.reg.Location(), g.reg, relayMedia{g.relay}, g.calls, g.log.With("component", "b2bua"))
	g.b2b.Register(g.sip.Server(), g.sip.Admit)
	return nil
}
