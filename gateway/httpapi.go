package gateway

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"callgate/gateway/api"
	"callgate/gateway/config"
	"callgate/gateway/recordings"
	"callgate/gateway/status"
	"callgate/gateway/web"
)

// accounts are the employees who may log in to the console.
func (g *Gateway) accounts() []api.Account {
	var out []api.Account
	for _, e := range g.cfg.Employees {
		if e.PasswordHash == "" {
			continue
		}
		out = append(out, api.Account{Employee: e.ID, Name: e.Name, Role: e.Role, Extensions: e.Extensions, Hash: []byte(e.PasswordHash)})
	}
	return out
}

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
	var scoped []api.Token
	for _, t := range h.Tokens {
		scoped = append(scoped, api.Token{Scope: t.Scope, Token: t.Token})
	}
	g.feed = api.NewFeed(feedBacklog)
	var unsubscribe func()
	g.feedCh, unsubscribe = g.calls.Bus().Subscribe(1024)
	_ = unsubscribe // the bus lives as long as the gateway
	dial := g.newDialer()
	srv := &api.Server{
		Tokens:     api.NewTokens(h.APITokens, scoped...),
		Gatherer:   g.prom,
		Ready:      g.readyChecks(),
		Calls:      g.calls.Store(),
		Recordings: &api.Recordings{Links: g.links, Files: g.recs, OwnOnly: h.RecordingAccess != "all"},
		CRM:        g.crm,
		Routes:     g.crm.Routes(dial.ClickToCall),
		Events:     g.feed,
		Dialer:     dial,
		Sessions:   api.NewSessions(g.accounts(), g.cfg.Console.SessionTTL.D(), g.cfg.Console.Visibility == "all"),
	}
	srv.Admin = &status.Admin{Location: g.reg.Location(), Directory: g.dir, Trunk: g.trunk, CRM: g.crm, Calls: g.b2b,
		Recordings: g.recs, Store: g.health, Guard: g.guard}
	srv.Proxies, srv.Log = proxies(h), g.log.With("component", "http")
	if len(g.cfg.Desks) > 0 {
		srv.Desks = g.dir
	}
	srv.Zone, _ = time.LoadLocation(g.cfg.Console.TimeZone)
	srv.Sessions.Zone = srv.Zone
	srv.OutOfHours = g.cfg.Console.OutOfHours()
	srv.Sessions.Names = map[string]string{}
	for _, e := range g.cfg.Employees {
		srv.Sessions.Names[e.ID] = cmp.Or(e.Name, e.ID)
	}
	if g.crm.Enabled() {
		srv.Clients = g.crm.Client
	}
	for pattern, h := range web.Routes() {
		if srv.Routes == nil {
			srv.Routes = map[string]http.Handler{}
		}
		srv.Routes[pattern] = h
	}
	streams, stop := context.WithCancel(context.Background())
	g.stopStreams = stop
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
