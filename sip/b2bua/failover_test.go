package b2bua

import (
	"slices"
	"sync"
	"testing"
	"time"

	"callgate/sip/location"
	"callgate/sip/resolve"
	"callgate/sip/sipnet"

	"github.com/emiago/sipgo/sip"
)

// downUpstream is a VPBX at fixed addresses that remembers which did not
// answer.
type downUpstream struct {
	resolve.Fixed
	mu   sync.Mutex
	down []sipnet.Target
}

func (u *downUpstream) Unreachable(t sipnet.Target) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.down = append(u.down, t)
}

func (u *downUpstream) reported() []sipnet.Target {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.down)
}

// failoverHarness is a B2BUA whose VPBX has two addresses, first and
// second, with a failover time of 300 ms, and extension 101's phone.
func failoverHarness(t *testing.T) (*harness, *rawPhone, *rawPhone, *downUpstream) {
	h := newHarness(t, newClient(t))
	first, second := newRawPhone(t), newRawPhone(t)
	up := &downUpstream{Fixed: upstreamAt(first.addr(), second.addr())}
	h.b.cfg.Upstream, h.b.cfg.Failover = up, 300*time.Millisecond
	h.loc.bindings["101"] = []location.Binding{{AOR: "101", Contact: "sip:101@127.0.0.1:5072", Source: "127.0.0.1:5070", Transport: "udp"}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(h.logs.String())
		}
	})
	return h, first, second, up
}

// An outbound call's INVITE that the VPBX's first address does not answer
// at all goes to its second address after the failover time, and the
// first is reported unreachable.
func TestInviteFailsOverToTheNextAddress(t *testing.T) {
	h, first, second, up := failoverHarness(t)
	inv := phoneInvite("fo1")
	done := h.served(inv)
	lost := first.next(sip.INVITE)
	sentAt := time.Now()
	got := second.next(sip.INVITE)
	if gap := time.Since(sentAt); gap < 250*time.Millisecond || gap > 2*time.Second {
		t.Fatalf("second address tried after %s, want the failover time (300ms)", gap)
	}
	if got.Recipient.User != "79161234567" || got.CallID().Value() == lost.CallID().Value() {
		t.Fatalf("INVITE at the second address: %s (first Call-ID %s)", got.StartLine(), lost.CallID().Value())
	}
	second.answerOK(got)
	_, tag := h.established(t, "fo1")
	if down := up.reported(); len(down) != 1 || down[0].Addr.String() != first.addr() {
		t.Fatalf("unreachable reported: %v", down)
	}
	h.hangupFrom(t, inv, tag, done)
}

// A 503 from the first address moves on at once (RFC 3263 §4.3); a
// provisional answer keeps the INVITE where it is however long the callee
// rings.
func TestInviteFailoverOn503NotOnRinging(t *testing.T) {
	h, first, second, _ := failoverHarness(t)
	inv := phoneInvite("fo2")
	done := h.served(inv)
	busy := first.next(sip.INVITE)
	first.answer(busy, sip.NewResponseFromRequest(busy, sip.StatusServiceUnavailable, "Service Unavailable", nil))
	sentAt := time.Now()
	got := second.next(sip.INVITE)
	if gap := time.Since(sentAt); gap > 250*time.Millisecond {
		t.Fatalf("a 503 waited %s before the next address", gap)
	}
	second.answerOK(got)
	_, tag := h.established(t, "fo2")
	h.hangupFrom(t, inv, tag, done)

	inv = phoneInvite("fo3")
	done = h.served(inv)
	ringing := first.next(sip.INVITE)
	first.answer(ringing, sip.NewResponseFromRequest(ringing, sip.StatusRinging, "Ringing", nil))
	for quiet := time.After(3 * h.b.cfg.Failover); quiet != nil; {
		select {
		case r := <-second.reqs:
			if r.IsInvite() {
				t.Fatalf("a ringing INVITE went on to the second address: %s", r.StartLine())
			}
		case <-quiet:
			quiet = nil
		}
	}
	first.answerOK(ringing)
	_, tag = h.established(t, "fo3")
	h.hangupFrom(t, inv, tag, done)
}
