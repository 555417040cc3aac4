package b2bua

import (
	"net/netip"

	"github.com/emiago/sipgo/sip"
)

// FailureCounter is implemented by an Authorizer that also counts failures
// other than digest ones (a wrong desk PIN dialled on an authenticated
// phone) toward the source's ban.
type FailureCounter interface {
	AuthFailure(src netip.AddrPort, user, reason string)
}

// countFailure reports a failure of user's request to the Authorizer, if it
// counts them.
func (b *B2BUA) countFailure(req *sip.Request, user, reason string) {
	fc, ok := b.auth.(FailureCounter)
	if !ok {
		return
	}
	src, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return
	}
	fc.AuthFailure(netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), user, reason)
}
