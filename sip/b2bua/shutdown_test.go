package b2bua

import (
	"errors"
	"io"
	"log/slog"
	"testing"

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
