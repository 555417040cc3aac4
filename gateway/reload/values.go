package reload

import (
	"cmp"
	"log/slog"
	"sync/atomic"
	"time"

	"callgate/gateway/api"
	"callgate/gateway/config"
	"callgate/sip/guard"
	"callgate/sip/registrar"
	"callgate/sip/trunk"
)

// The values below are what the configuration gives each part, made the
// same way at start and at every reload.

// RegistrarConfig is the registrar's policy.
func RegistrarConfig(cfg *config.Config, log *slog.Logger) registrar.Config {
	return registrar.Config{
		MinExpires: cfg.SIP.MinExpires.D(), MaxExpires: cfg.SIP.MaxExpires.D(), DefaultExpires: cfg.SIP.DefaultExpires.D(),
		MaxContacts: cfg.SIP.MaxContacts, AllowNetworks: cfg.SIP.AllowNetworks.Prefixes(), ServerName: cfg.SIP.UserAgent,
		Scanners: guard.NewScanners(cfg.SIP.ScannerUserAgents), Log: log,
	}
}

// TrunkAccounts are the upstream accounts to register.
func TrunkAccounts(cfg *config.Config) []trunk.Account {
	var out []trunk.Account
	for _, a := range cfg.Upstream.Accounts {
		out = append(out, trunk.Account{User: a.User, AuthUser: a.AuthUser, Password: a.Password})
	}
	return out
}

// UpstreamUsers are the Request-URI users the VPBX calls the office on.
func UpstreamUsers(cfg *config.Config) map[string]bool {
	out := map[string]bool{}
	for _, a := range cfg.Upstream.Accounts {
		out[a.User] = true
	}
	return out
}

// ConsoleAccounts are the employees who may log in to the console.
func ConsoleAccounts(cfg *config.Config) []api.Account {
	var out []api.Account
	for _, e := range cfg.Employees {
		if e.PasswordHash == "" {
			continue
		}
		out = append(out, api.Account{Employee: e.ID, Name: e.Name, Role: e.Role, Extensions: e.Extensions, Hash: []byte(e.PasswordHash)})
	}
	return out
}

// Names are the employees' display names by id, for the console.
func Names(cfg *config.Config) map[string]string {
	out := map[string]string{}
	for _, e := range cfg.Employees {
		out[e.ID] = cmp.Or(e.Name, e.ID)
	}
	return out
}

// ScopedTokens are the API's tokens with a scope ([[http.token]]).
func ScopedTokens(cfg *config.Config) []api.Token {
	var out []api.Token
	for _, t := range cfg.HTTP.Tokens {
		out = append(out, api.Token{Scope: t.Scope, Token: t.Token})
	}
	return out
}

// BusinessHours tells missed calls outside the configured business hours;
// a reload changes the hours.
type BusinessHours struct {
	f atomic.Pointer[func(time.Time) bool] // nil inside: no hours configured
}

// Set takes the hours and days of a configuration.
func (h *BusinessHours) Set(c config.Console) {
	f := c.OutOfHours()
	h.f.Store(&f)
}

// OutOfHours reports whether t is outside business hours (false when none
// are configured).
func (h *BusinessHours) OutOfHours(t time.Time) bool {
	if f := h.f.Load(); f != nil && *f != nil {
		return (*f)(t)
	}
	return false
}
