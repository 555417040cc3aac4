// Package gateway wires callgate together: it builds every part from the
// configuration, starts them in order and stops them in reverse. The parts
// themselves (sip/, media/, crm/) know nothing of each other or of gateway.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"callgate/crm/outbox"
	"callgate/gateway/api"
	"callgate/gateway/backup"
	"callgate/gateway/callmodel"
	"callgate/gateway/calls"
	"callgate/gateway/config"
	"callgate/gateway/conncap"
	"callgate/gateway/control"
	"callgate/gateway/crmlink"
	"callgate/gateway/directory"
	"callgate/gateway/presence"
	"callgate/gateway/recordings"
	"callgate/gateway/reload"
	"callgate/gateway/routing"
	"callgate/gateway/sdnotify"
	"callgate/gateway/sipstack"
	"callgate/gateway/status"
	"callgate/gateway/store"
	"callgate/gateway/storehealth"
	"callgate/gateway/tracking"
	"callgate/gateway/upstream"
	"callgate/media/relay"
	"callgate/media/webrtc"
	"callgate/sip/b2bua"
	"callgate/sip/digest"
	"callgate/sip/guard"
	"callgate/sip/location"
	"callgate/sip/registrar"
	"callgate/sip/sipws"
	"callgate/sip/trunk"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
)

// Gateway is one running callgate.
type Gateway struct {
	cfg    *config.Config // as started; the reloader holds the one in force
	reload *reload.Reloader
	log    *slog.Logger
	store  *store.Store
	dir    *directory.Directory
	guard  *guard.Guard
	reg    *registrar.Registrar
	sip    *sipstack.Stack
	trunk  *trunk.Trunk
	vpbx   *upstream.VPBX // the VPBX's addresses, trusted sources and trunk
	router *routing.Router
	// presence holds the employees' statuses from the CRM.
	presence presence.Presence
	http     *http.Server

	relay  *relay.Relay
	webrtc *webrtc.Endpoint // browser phones' media; nil without the HTTP listener
	sipWS  *sipws.Entry     // SIP over WebSocket, the HTTP listener's /sip
	recs   *recordings.Library
	b2b    *b2bua.B2BUA
	calls  *callmodel.Model
	saver  *calls.Writer     // the call model's records waiting for the database
	httpL  *conncap.Listener // nil without http.listen
	// live events for /api/v1/events
	feed        *api.Feed
	links       *recordings.Links // signed recording links; nil without HTTP
	crm         *crmlink.Link
	outboxes    []*outbox.Outbox  // the CRMs' operations waiting for delivery
	track       *tracking.Tracker // dynamic call tracking; nil without Mango's API
	feedCh      <-chan calls.Event
	tokens      *api.Tokens   // the API's; nil without HTTP
	sessions    *api.Sessions // console logins; nil without HTTP
	stopStreams context.CancelFunc
	prom        *prometheus.Registry

	bindings  *location.Persister // registrations written behind to the store
	keepalive *location.Keepalive
	health    *storehealth.Health // writes waiting for the store
	ctl       *control.Server     // backups of the running daemon; nil without
	backups   *backup.Schedule    // [backup]; nil when off

	now     chan struct{} // closed by StopNow: no more grace for calls
	nowOnce sync.Once
}

// New builds a gateway: it opens the store (failing at once if another
// instance holds it), restores registrations and binds every socket, but
// serves nothing until Run.
func New(cfg *config.Config, log *slog.Logger) (_ *Gateway, err error) {
	g := &Gateway{cfg: cfg, log: log, now: make(chan struct{}), reload: reload.New(cfg, log)}
	defer func() {
		if err != nil {
			g.closeAll() // release what was opened before the failure
		}
	}()
	opened := sdnotify.Extend("checking the database in " + cfg.DataDir)
	g.store, err = store.Open(cfg.DataDir)
	opened()
	if err != nil {
		return nil, err
	}
	g.health = &storehealth.Health{Dir: cfg.DataDir, Sources: g.storeWriters}
	g.ctl, g.backups = control.Open(cfg.Control.Socket, g.store, log), backup.New(cfg, g.store, log)
	g.dir = directory.New(cfg)
	for _, k := range g.dir.Desks() {
		if v, err := g.store.State("shift." + k.Extension); err == nil && len(v) > 0 {
			g.dir.Restore(k.Extension, string(v))
		}
	}
	var ids []string
	for _, e := range cfg.Employees {
		ids = append(ids, e.ID)
	}
	if err = g.presence.Keep(g.store, ids); err != nil { // statuses outlive restarts
		return nil, err
	}
	g.dir.OnShift = func(desk, employee string) {
		log.Info("shift", "desk", desk, "employee", employee)
		if err := g.store.SetState("shift."+desk, []byte(employee)); err != nil {
			log.Error("shift not saved", "desk", desk, "error", err)
		}
	}
	g.guard = guard.New(guard.Config{MaxFailures: cfg.SIP.Ban.MaxFailures, MaxFailuresPerIP: cfg.SIP.Ban.MaxFailuresPerIP,
		Window: cfg.SIP.Ban.Window.D(), BanTime: cfg.SIP.Ban.Duration.D(), Log: log})
	algs := make([]digest.Algorithm, len(cfg.SIP.DigestAlgorithms))
	for i, a := range cfg.SIP.DigestAlgorithms {
		algs[i] = digest.Algorithm(a)
	}
	loc := location.New()
	g.bindings = location.NewPersister(loc, g.store.Bucket(store.BucketBindings), log)
	if n, err := g.bindings.Restore(time.Now()); err != nil {
		return nil, err
	} else if n > 0 {
		log.Info("registrations restored", "bindings", n)
	}
	g.reg = registrar.New(reload.RegistrarConfig(cfg, log), digest.NewServer(cfg.SIP.Realm, algs, cfg.SIP.NonceLifetime.D()), g.dir, g.guard, loc)

	g.sip, err = sipstack.New(cfg, g.reg, log)
	if err != nil {
		return nil, err
	}
	if cfg.HTTP.Listen != "" { // before the B2BUA, which takes the WebSocket Contact
		if g.httpL, err = conncap.Listen(cfg.HTTP.Listen, cfg.HTTP.MaxConnsPerIP, proxies(cfg.HTTP).Trusts, log.With("component", "http")); err != nil {
			return nil, fmt.Errorf("listen http %s: %w", cfg.HTTP.Listen, err)
		}
		g.sipWS = g.sip.WebSocket(g.httpL.Addr(), api.ClientAddr, sipws.OwnOrigin(proxies(cfg.HTTP).HTTPS, cfg.HTTP.PublicURL))
		if err := g.newRecordingLinks(); err != nil {
			return nil, err
		}
	}
	g.keepalive = location.NewKeepalive(loc, g.sip, cfg.SIP.KeepaliveInterval.D(), log)
	g.vpbx = upstream.New(cfg, g.sip, log)
	g.trunk = g.vpbx.Trunk
	if err := g.newMedia(); err != nil {
		return nil, err
	}
	g.saver = g.calls.Writer()
	g.sip.KeepOpen(loc, func(a netip.AddrPort) bool { return g.b2b != nil && g.b2b.PeerAt(a) })
	sipStack, b2b := g.sip, g.b2b // closeAll forgets the stack; its panics still count
	g.prom = status.Registry(status.Parts{Registrar: g.reg, Bindings: g.bindings, Guard: g.guard, B2BUA: g.b2b, Relay: g.relay, Trunk: g.trunk, WebRTC: g.webrtc,
		Panics:     func() uint64 { return sipStack.Panics() + b2b.Panics() },
		Collectors: slices.Concat(g.calls.Collectors(), g.sip.Collectors(), []prometheus.Collector{g.router.DialRefused}, g.recs.Collectors(), g.health.Collectors(), g.backups.Collectors(), g.reload.Collectors(), g.httpL.Collectors())})
	// The CRMs do not depend on the HTTP API; the API shows their state.
	if err := g.newCRM(); err != nil {
		return nil, err
	}
	if g.httpL != nil {
		if err := g.newAPI(); err != nil {
			return nil, err
		}
	}
	g.reload.Attach(g.reloadParts())
	return g, nil
}

// HTTPAddr is the address the HTTP API listens on ("" if disabled).
func (g *Gateway) HTTPAddr() string {
	if g.httpL == nil {
		return ""
	}
	return g.httpL.Addr().String()
}

// Run serves until ctx ends, then shuts down in order: refuse new calls and
// let those in progress finish (calls.shutdown_grace, or until StopNow),
// unregister upstream, stop listeners, flush registrations, close the store.
func (g *Gateway) Run(ctx context.Context) error {
	defer g.closeAll()
	if err := g.sip.Serve(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	g.crm.Start(bg)
	if g.http != nil {
		go g.feed.Run(bg, g.feedCh)
		go func() {
			var err error
			if g.cfg.HTTP.TLSCert != "" {
				err = g.http.ServeTLS(g.httpL, g.cfg.HTTP.TLSCert, g.cfg.HTTP.TLSKey)
			} else {
				err = g.http.Serve(g.httpL)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				g.log.Error("http server stopped", "error", err)
			}
		}()
	}
	// The accounts stay registered while calls drain: the VPBX's new
	// calls get 503 and go to its next route, and no provider is tempted
	// to end a call whose account went away.
	trunkCtx, stopTrunk := context.WithCancel(context.Background())
	defer stopTrunk()
	trunkDone := make(chan struct{})
	go func() { g.vpbx.Run(trunkCtx); close(trunkDone) }()
	wg.Add(8)
	go g.ctl.Serve()
	go func() { defer wg.Done(); g.backups.Run(bg) }()
	go func() { defer wg.Done(); g.recs.RunJanitor(bg) }()
	go func() { defer wg.Done(); g.recs.RunEncoders(bg) }()
	go func() { defer wg.Done(); g.recs.RunArchive(bg) }()
	go func() { defer wg.Done(); g.bindings.Run(bg) }()
	go func() { defer wg.Done(); g.guard.Run(bg, 5*time.Second) }()
	go func() { defer wg.Done(); g.keepalive.Run(bg) }()
	go func() { defer wg.Done(); g.sip.Watchdog(bg) }()
	g.log.Info("callgate running", "sip", fmt.Sprint(g.cfg.SIP.Listen), "advertise", g.sip.Advertise(), "http", g.HTTPAddr())
	_, _ = daemon.SdNotify(false, daemon.SdNotifyReady+"\nSTATUS=running")

	<-ctx.Done()
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	g.log.Info("stopping")
	g.b2b.Stop(g.cfg.Calls.ShutdownGrace.D(), g.now)
	stopTrunk()
	<-trunkDone // the trunk unregisters while the sockets are still open
	if g.http != nil {
		g.stopStreams() // event streams never go idle by themselves
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_ = g.http.Shutdown(sctx)
		cancel()
	}
	stopBG()
	wg.Wait()
	g.relay.Close()
	g.webrtc.Close()
	g.calls.Close()
	g.crm.Stop()
	if err := g.bindings.Flush(); err != nil {
		g.log.Error("final flush of registrations failed", "error", err)
	}
	g.log.Info("stopped")
	return nil
}

// StopNow ends the grace of a stop: calls still in progress are hung up
// at once (a second SIGTERM).
func (g *Gateway) StopNow() { g.nowOnce.Do(func() { close(g.now) }) }

func (g *Gateway) closeAll() {
	g.ctl.Close() // ends a copy in progress before the store closes
	if g.sip != nil {
		g.sip.Close()
		g.sip = nil
	}
	if g.httpL != nil {
		g.httpL.Close()
	}
	if g.store != nil {
		if err := g.store.Close(); err != nil {
			g.log.Error("close store", "error", err)
		}
		g.store = nil
	}
}

func (g *Gateway) readyChecks() []api.Check {
	return []api.Check{
		{Name: "store", Fn: func() error {
			if g.store == nil {
				return errors.New("closed")
			}
			return nil
		}},
		{Name: "sip", Fn: g.sip.Ready},
		{Name: "calls", Fn: func() error {
			if g.b2b.Draining() {
				return errors.New("draining: new calls are refused while callgate stops")
			}
			return nil
		}},
		{Name: "upstream", Fn: g.trunk.Ready},
		{Name: "store_writes", Fn: g.health.Ready},
	}
}

// storeWriters are the parts that keep in memory what the store refuses:
// the call records' writer and the CRM outboxes.
func (g *Gateway) storeWriters() []storehealth.Source {
	var out []storehealth.Source
	if g.saver != nil {
		out = append(out, storehealth.CallRecords(g.saver))
	}
	for _, box := range g.outboxes {
		out = append(out, storehealth.Outbox(box))
	}
	return out
}
