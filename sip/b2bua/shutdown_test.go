package b2bua

import (
	"callgate/sip/siptest"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// respondTx is a server transaction that keeps what it was answered.
type respondTx struct {
	sip.ServerTransaction
	res []*sip.Response
}

func (t *respondTx) Respond(res *sip.Response) error {
	t.res = append(t.res, res)
	return nil
}

type eventLog []Event

func (l *eventLog) CallEvent(e Event) { *l = append(*l, e) }

// After Shutdown no call starts: an INVITE from the VPBX gets 503 with
// Retry-After, a click-to-call is refused, and nothing reaches the observer
// (whose consumers are closing).
func TestShutdownRefusesNewCalls(t *testing.T) {
	var events eventLog
	b := New(Config{Accounts: map[string]bool{"sales1": true}}, nil, nil, nil, nil, nil, &events, slog.New(slog.NewTextHandler(io.Discard, nil)))
	b.Shutdown()

	req := sip.NewRequest(sip.INVITE, sip.Uri{User: "sales1", Host: "127.0.0.1", Port: 5060})
	via := sip.NewParams()
	via.Add("branch", sip.GenerateBranch())
	req.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "127.0.0.1", Port: 5070, Params: via})
	from := sip.NewParams()
	from.Add("tag", "a1")
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{User: "79161234567", Host: "127.0.0.1"}, Params: from})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{User: "sales1", Host: "127.0.0.1"}, Params: sip.NewParams()})
	callID := sip.CallIDHeader("shutdown-1")
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	req.SetSource("127.0.0.1:5070")
	tx := &respondTx{}
	b.onInvite(req, tx)
	if len(tx.res) != 1 || tx.res[0].StatusCode != sip.StatusServiceUnavailable || tx.res[0].GetHeader("Retry-After") == nil {
		t.Fatalf("INVITE during shutdown answered %v", tx.res)
	}

	if _, err := b.ClickToCall(ClickToCall{Line: Target{Extension: "101"}}); !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("click-to-call during shutdown: %v", err)
	}
	b.Wait()
	if len(events) != 0 || b.Active() != 0 {
		t.Fatalf("a call started during shutdown: %+v", events)
	}
}

// While draining, a call in progress goes on to its normal end, a new
// INVITE from the VPBX gets 503 with Retry-After, and Wait returns only
// once the last call has ended.
func TestDrainLetsCallsFinish(t *testing.T) {
	o := newOffice(t)
	ctx := testCtx(t)
	p := o.inbound(ctx)
	o.b.Drain()
	if !o.b.Draining() {
		t.Fatal("Draining() is false after Drain")
	}
	_, err := o.vpbx.Invite(ctx, "sales1", callerNum, siptest.SDP(rtpOutside))
	var refused *sipgo.ErrDialogResponse
	if !errors.As(err, &refused) || refused.Res.StatusCode != sip.StatusServiceUnavailable || refused.Res.GetHeader("Retry-After") == nil {
		t.Fatalf("a new INVITE while draining: %v; want 503 with Retry-After", err)
	}
	waited := make(chan struct{})
	go func() { o.b.Wait(); close(waited) }()
	select {
	case <-waited:
		t.Fatal("Wait returned while a call was still in progress")
	case <-time.After(300 * time.Millisecond):
	}
	if closed(p.outside.Done()) || closed(p.ivanov.Done()) {
		t.Fatal("draining hung up the call in progress")
	}
	ivanov, _ := staffTarget("ivanov")
	o.outsideHangsUp(ctx, p, ivanov, p.ivanov)
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after the last call ended")
	}
}

// Stop hangs up what is still running when the grace is over, or at once
// when told to (a second stop signal), and says how many calls it ended.
func TestStopHangsUpAfterGraceOrAtOnce(t *testing.T) {
	for _, c := range []struct {
		name  string
		grace time.Duration
		now   bool
	}{{"grace over", 300 * time.Millisecond, false}, {"second signal", time.Hour, true}} {
		t.Run(c.name, func(t *testing.T) {
			o := newOffice(t)
			ctx := testCtx(t)
			p := o.inbound(ctx)
			now := make(chan struct{})
			if c.now {
				close(now)
			}
			start := time.Now()
			if n := o.b.Stop(c.grace, now); n != 1 {
				t.Fatalf("Stop hung up %d calls, want 1", n)
			}
			if took := time.Since(start); took < c.grace && !c.now || c.now && took > 10*time.Second {
				t.Fatalf("Stop returned after %s (grace %s, at once %v)", took, c.grace, c.now)
			}
			ev := o.awaitEvent("the call ended", eventOf(EventEnded, p.id))
			if ev.HangupBy != "system" {
				t.Fatalf("ended by %q, want system", ev.HangupBy)
			}
			released(t, "the outside party", p.outside)
			released(t, "ivanov", p.ivanov)
		})
	}
}
