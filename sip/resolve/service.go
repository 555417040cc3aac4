package resolve

import (
	"context"
	"errors"

	"callgate/sip/sipnet"
)

// Service is one configured server (the VPBX's registrar or outbound
// proxy) with the resolver that finds it: what the trunk and the B2BUA
// ask where to send a request.
type Service struct {
	r    *Resolver
	name Name
}

// Service binds n to the resolver.
func (r *Resolver) Service(n Name) *Service { return &Service{r: r, name: n} }

// errNoService is the answer of a nil Service: no server is configured.
var errNoService = errors.New("no upstream registrar or proxy is configured")

// Targets are the server's addresses in the order to try them; see
// Resolver.Lookup.
func (s *Service) Targets(ctx context.Context) ([]sipnet.Target, error) {
	if s == nil {
		return nil, errNoService
	}
	return s.r.Lookup(ctx, s.name)
}

// Unreachable reports that t did not answer in time; see
// Resolver.Unreachable.
func (s *Service) Unreachable(t sipnet.Target) {
	if s != nil {
		s.r.Unreachable(t)
	}
}

// String is the server's name as configured.
func (s *Service) String() string {
	if s == nil {
		return ""
	}
	return s.name.String()
}

// Fixed is a server at known addresses, tried in the order given: for
// tests and for a configuration without names.
type Fixed []sipnet.Target

// Targets returns the addresses.
func (f Fixed) Targets(context.Context) ([]sipnet.Target, error) {
	if len(f) == 0 {
		return nil, errNoService
	}
	return f, nil
}

// Unreachable does nothing: the order is fixed.
func (Fixed) Unreachable(sipnet.Target) {}
