package gateway

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"callgate/gateway/api"
	"callgate/gateway/config"
	"callgate/gateway/presence"
	"callgate/gateway/recordings"
	"callgate/gateway/reload"
	"callgate/gateway/status"
	"callgate/gateway/web"
)

// feedBacklog is how many events /api/v1/events can replay to a client
// that reconnects with Last-Event-ID.
const feedBacklog = 4096

// newRecordingLinks sets up the signed links to recordings, which point at
// the HTTP API on g.httpL (or its public URL).
func (g *Gateway) newRecordingLinks() error {
	h := g.cfg.HTTP
	key, err := g.store.Secret("recording-links", 32)
	if err != nil {
		return err
	}
	base := h.PublicURL
	if base == "" {
		scheme := "http"
		if h.TLSCert != "" {
			scheme = "https"
		}
		base = fmt.Sprintf("%s://%s", scheme, g.httpL.Addr())
	}
	g.links = &recordings.Links{Key: key, TTL: h.LinkTTL.D(), BaseURL: base}
	return nil
}

// newAPI builds the HTTP API on g.httpL, after the recording links and the
// CRM link.
func (g *Gateway) newAPI() error {
	h := g.cfg.HTTP
	g.feed = api.NewFeed(feedBacklog)
	var unsubscribe func()
	g.feedCh, unsubscribe = g.calls.Bus().Subscribe(1024)
	_ = unsubscribe // the bus lives as long as the gateway
	dial := g.newDialer()
	deskKey, err := g.store.Secret("desk-pc", 32)
	if err != nil {
		return err
	}
	srv := &api.Server{
		Tokens:     api.NewTokens(h.APITokens, reload.ScopedTokens(g.cfg)...),
		Gatherer:   g.prom,
		Ready:      g.readyChecks(),
		Degraded:   []api.Check{{Name: "archive", Fn: g.recs.ArchiveHealth}, {Name: "backup", Fn: g.backups.Health}},
		Calls:      g.calls.Store(),
		Recordings: &api.Recordings{Links: g.links, Files: g.recs, OwnOnly: h.RecordingAccess != "all"},
		CRM:        g.crm,
		Routes:     g.crm.Routes(dial.ClickToCall),
		Events:     g.feed,
		Dialer:     dial,
		Sessions:   api.NewSessions(nil, g.cfg.Console.SessionTTL.D(), false),
		Desks:      g.dir, // the console hides desks while there are none; a reload may add some
		DeskKey:    deskKey,
		OutOfHours: g.reload.OutOfHours,
		Region:     g.cfg.Calls.DefaultRegion,
		Presence:   &presence.Told{Presence: &g.presence, Tell: g.crm.UserStatus},
		Phone:      g.dir, PhoneBindings: g.reg.Location(),
	}
	srv.Sessions.Replace(reload.ConsoleAccounts(g.cfg), reload.Names(g.cfg), g.cfg.Console.Visibility == "all")
	srv.Admin = &status.Admin{Location: g.reg.Location(), Directory: g.dir, Trunk: g.trunk, CRM: g.crm, Calls: g.b2b,
		Recordings: g.recs, Store: g.health, Guard: g.guard}
	srv.Proxies, srv.Log = proxies(h), g.log.With("component", "http")
	srv.Zone = g.cfg.Console.TimeZone.Location()
	srv.Sessions.Zone = srv.Zone
	if g.crm.Enabled() {
		srv.Clients = g.crm.Client
	}
	for pattern, h := range web.Routes() {
		if srv.Routes == nil {
			srv.Routes = map[string]http.Handler{}
		}
		srv.Routes[pattern] = h
	}
	srv.Routes["/sip"] = g.sipWS
	streams, stop := context.WithCancel(context.Background())
	g.stopStreams = stop
	g.tokens, g.sessions = srv.Tokens, srv.Sessions
	g.http = &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: min(10*time.Second, h.ReadTimeout.D()),
		ReadTimeout: h.ReadTimeout.D(), WriteTimeout: h.WriteTimeout.D(), IdleTimeout: h.IdleTimeout.D(),
		MaxHeaderBytes: h.MaxHeaderBytes,
		BaseContext:    func(net.Listener) context.Context { return streams }}
	return nil
}

// proxies are the API's trusted reverse proxies (validated networks); an
// https public_url is the scheme of those that name none.
func proxies(h config.HTTP) *api.Proxies {
	p := &api.Proxies{Header: h.ProxyHeader, PublicHTTPS: strings.HasPrefix(h.PublicURL, "https:")}
	for _, n := range h.TrustedProxies.Prefixes() {
		p.Trusted = append(p.Trusted, n.Masked())
	}
	return p
}
