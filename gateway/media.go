package gateway

import (
	"net/http"
	"net/netip"
	"time"

	"callgate/gateway/archive"
	"callgate/gateway/recordings"
	"callgate/gateway/reload"
	"callgate/gateway/routing"
	"callgate/gateway/store"
	"callgate/gateway/tracking"
	"callgate/media/relay"
	"callgate/media/webrtc"
	"callgate/sip/b2bua"
	"callgate/sip/sipnet"
)

// newMedia builds the relay, the recorder, the call model and the B2BUA,
// repairs what a crash left behind, and installs the call handlers.
func (g *Gateway) newMedia() error {
	cfg := g.cfg
	var err error
	g.relay, err = relay.New(relay.Config{Bind: cfg.Media.Bind.Addr, PortMin: cfg.Media.RTPPorts.Lo, PortMax: cfg.Media.RTPPorts.Hi, Timeout: cfg.Media.Timeout.D(),
		OnTimeout: func(id string) {
			g.log.Warn("media timeout: hanging up", "call_id", id)
			g.b2b.Hangup(id, "media timeout")
		}})
	if err != nil {
		return err
	}
	g.recs = recordings.New(recordings.Config{Enabled: cfg.Recording.Enabled, Dir: cfg.Recording.Dir,
		Retention: cfg.Recording.Retention.D(), MinFree: cfg.Recording.MinFree.Bytes, Format: cfg.Recording.Format,
		Encoders: recordings.Encoders(), Log: g.log})
	if a := cfg.Archive; a.Enabled {
		st, err := archive.FromConfig(a)
		if err != nil {
			return err
		}
		g.recs.Archive(recordings.ArchiveConfig{Store: st, Queue: g.store.Bucket(store.BucketArchiveQueue),
			Index: g.store.Bucket(store.BucketArchived), After: a.After.D(), KeepLocal: a.KeepLocal})
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

	phoneIP := netip.MustParseAddr(g.sip.Advertise())
	if cfg.Media.Advertise.IsSet() {
		phoneIP = cfg.Media.Advertise.Addr
	}
	upIP := phoneIP
	if cfg.Media.UpstreamAdvertise.IsSet() {
		upIP = cfg.Media.UpstreamAdvertise.Addr
	}
	local := ""
	if p, ok := g.sip.Local(sipnet.UDP); ok {
		local = p.String()
	}
	if cfg.HTTP.Listen != "" { // browsers reach callgate only through /sip
		if g.webrtc, err = webrtc.New(webrtc.Config{Bind: cfg.Media.Bind.Addr, Port: cfg.Media.WebRTCPort, Advertise: phoneIP, Log: g.log.With("component", "webrtc")}); err != nil {
			return err
		}
	}
	g.router = routing.New(cfg, g.dir)
	g.router.Log = g.log.With("component", "routing")
	g.b2b = b2bua.New(b2bua.Config{
		Domain: cfg.Upstream.Domain, LocalDomain: g.sip.Advertise(), Upstream: g.vpbx.Target, Failover: cfg.Upstream.FailoverTimeout.D(), Trusted: g.sip.Trusted(), Accounts: reload.UpstreamUsers(cfg),
		PhoneMediaIP: phoneIP, UpstreamMedia: upIP, LocalUDP: local,
		Contact:           g.sip.PrimaryContact(),
		TransportContacts: g.sip.TransportContacts(),
		RingTimeout:       cfg.Calls.RingTimeout.D(), InternalRecord: cfg.Recording.Internal, NewWebRTCLeg: b2bua.WebRTCLegs(g.webrtc.NewLeg),
	}, g.sip.Client(), g.router, g.reg.Location(), g.reg, b2bua.RelayMedia{Relay: g.relay}, g.calls, g.log.With("component", "b2bua"))
	g.b2b.Register(g.sip.Server(), g.sip.Admit)
	return nil
}
