// Package upstream is the VPBX as callgate reaches it: the resolver built
// from [dns], the registrar's (or outbound proxy's) name looked up as
// RFC 3263 says for the trunk's REGISTERs and the B2BUA's INVITEs, the
// trusted sources kept current from DNS, and the trunk that registers the
// accounts.
package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"

	"callgate/gateway/config"
	"callgate/sip/resolve"
	"callgate/sip/sipnet"
	"callgate/sip/trunk"

	"github.com/emiago/sipgo/sip"
)

// Stack is what the VPBX side needs of the SIP stack (sipstack.Stack).
type Stack interface {
	Local(transport sipnet.Transport) (netip.AddrPort, bool)
	ContactHostPort(transport sipnet.Transport) string
	Send(ctx context.Context, req *sip.Request, local string) (*sip.Response, error)
	// Trusted is the set of the VPBX's source networks the stack admits
	// requests from; VPBX keeps it current.
	Trusted() *sipnet.NetworkSet
}

// VPBX is the upstream side of a running callgate.
type VPBX struct {
	// Resolver looks the VPBX's names up.
	Resolver *resolve.Resolver
	// Target is where requests to the VPBX go: the proxy, else the
	// registrar; nil (which answers with an error) without either.
	Target *resolve.Service
	// Trunk registers the accounts; nil without accounts.
	Trunk *trunk.Trunk
	trust *resolve.Trust
}

// New builds the VPBX side from the configuration; nothing is looked up
// or sent before Run.
func New(cfg *config.Config, stack Stack, log *slog.Logger) *VPBX {
	var transports []sipnet.Transport
	contacts := map[sipnet.Transport]string{}
	ipv4Only := true
	for _, tr := range sipnet.Transports() {
		if local, ok := stack.Local(tr); ok {
			transports = append(transports, tr)
			contacts[tr] = stack.ContactHostPort(tr)
			ipv4Only = ipv4Only && local.Addr().Unmap().Is4()
		}
	}
	u := cfg.Upstream
	v := &VPBX{Resolver: resolve.New(resolve.Config{Servers: cfg.DNS.Addrs(), Transports: transports, IPv4Only: ipv4Only,
		Log: log.With("component", "dns")})}
	if t := u.Target(); t.IsSet() {
		v.Target = v.Resolver.Service(resolve.Name{Transport: t.Transport, Host: t.Host, Port: t.Port})
		log.Info("VPBX", "target", v.Target.String(), "dns_servers", fmt.Sprint(v.Resolver.Servers()))
	}
	v.trust = v.Resolver.Trust(stack.Trusted(), u.TrustedSources.Prefixes(), u.TrustedSources.Hosts(), log.With("component", "trusted-sources"))
	if len(u.Accounts) == 0 {
		return v
	}
	accounts := make([]trunk.Account, 0, len(u.Accounts))
	for _, a := range u.Accounts {
		accounts = append(accounts, trunk.Account{User: a.User, AuthUser: a.AuthUser, Password: a.Password})
	}
	send := func(ctx context.Context, req *sip.Request) (*sip.Response, error) { return stack.Send(ctx, req, "") }
	v.Trunk = trunk.New(trunk.Config{Upstream: v.Target, Domain: u.Domain, Contacts: contacts,
		Expires: u.Expires.D(), Timeout: u.RegisterTimeout.D(), Failover: u.FailoverTimeout.D(),
		RetryMin: u.RetryMin.D(), RetryMax: u.RetryMax.D(), UserAgent: cfg.SIP.UserAgent},
		send, accounts, log.With("component", "trunk"), nil)
	return v
}

// Run keeps the trusted sources current and the accounts registered
// until ctx ends, and returns once the accounts are unregistered.
func (v *VPBX) Run(ctx context.Context) {
	done := make(chan struct{})
	go func() { v.trust.Run(ctx); close(done) }()
	if v.Trunk != nil {
		v.Trunk.Run(ctx)
	}
	<-done
}
