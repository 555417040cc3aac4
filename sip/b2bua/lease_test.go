package b2bua

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"callgate/sip/location"

	"github.com/emiago/sipgo/sip"
)

type refusingRouter struct{}

func (refusingRouter) Inbound(string, string) (InboundRoute, error) {
	return InboundRoute{}, errors.New("none")
}
func (refusingRouter) Outbound(string, string) (OutboundRoute, error) {
	return OutboundRoute{}, &Refusal{Status: 403, Reason: "Dial Rule: premium-rate", Rule: "premium-rate"}
}
func (refusingRouter) Transfer(string, string) (TransferRoute, error) {
	return TransferRoute{}, &Refusal{Status: 403, Reason: "Dial Rule: international", Rule: "international"}
}

type allowAll struct{}

func (allowAll) AuthorizeRequest(*sip.Request, netip.AddrPort) (string, *sip.Response) {
	return "101", nil
}

type noDevices struct{}

func (noDevices) Lookup(string, time.Time) []location.Binding { return nil }

type countLease struct{ answered, ended int }

func (l *countLease) Answered() { l.answered++ }
func (l *countLease) End()      { l.ended++ }

// A router's Refusal reaches the phone as its status and reason phrase, and
// no call starts.
func TestRefusalAnswersThePhone(t *testing.T) {
	var events eventLog
	b := New(Config{}, nil, refusingRouter{}, noDevices{}, allowAll{}, nil, &events, slog.New(slog.NewTextHandler(io.Discard, nil)))
	req := sip.NewRequest(sip.INVITE, sip.Uri{User: "88095050505", Host: "127.0.0.1", Port: 5060})
	via := sip.NewParams()
	via.Add("branch", sip.GenerateBranch())
	req.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "127.0.0.1", Port: 5070, Params: via})
	from := sip.NewParams()
	from.Add("tag", "a1")
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{User: "101", Host: "127.0.0.1"}, Params: from})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{User: "88095050505", Host: "127.0.0.1"}, Params: sip.NewParams()})
	callID := sip.CallIDHeader("refused-1")
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	req.SetSource("127.0.0.1:5070")
	tx := &respondTx{}
	b.onInvite(req, tx)
	if len(tx.res) != 1 || tx.res[0].StatusCode != 403 || tx.res[0].Reason != "Dial Rule: premium-rate" {
		t.Fatalf("refused INVITE answered %v", tx.res)
	}
	if len(events) != 0 || b.Active() != 0 {
		t.Fatalf("a refused call started: %+v", events)
	}
}

// A click-to-call that cannot start gives its lease back.
func TestClickToCallThatCannotStartEndsItsLease(t *testing.T) {
	b := New(Config{}, nil, refusingRouter{}, noDevices{}, allowAll{}, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	l := &countLease{}
	if _, err := b.ClickToCall(ClickToCall{Line: Target{Extension: "101"}, Route: OutboundRoute{Lease: l}}); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("click-to-call to an unregistered line: %v", err)
	}
	b.Shutdown()
	if _, err := b.ClickToCall(ClickToCall{Line: Target{Extension: "101"}, Route: OutboundRoute{Lease: l}}); !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("click-to-call during shutdown: %v", err)
	}
	if l.ended != 2 || l.answered != 0 {
		t.Fatalf("lease answered %d, ended %d times; want 0 and 2", l.answered, l.ended)
	}
}

// A call's leases end with it; a lease settled after the end ends at once.
func TestLeasesEndWithTheCall(t *testing.T) {
	b := New(Config{}, nil, nil, nil, nil, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c := &call{b: b, id: "x", inbox: make(chan func(), 1), closed: make(chan struct{})}
	kept, failed, late := &countLease{}, &countLease{}, &countLease{}
	c.hold(kept)
	c.settle(failed, false)
	if failed.ended != 1 || kept.ended != 0 {
		t.Fatal("a failed leg's lease must end at once, a held one not yet")
	}
	c.finish()
	c.settle(late, true)
	c.hold(late)
	if kept.ended != 1 || late.answered != 1 || late.ended != 2 {
		t.Fatalf("after the end: kept %+v, late %+v", kept, late)
	}
}
