package e2e

import (
	"path/filepath"
	"testing"
	"time"

	"callgate/media/record"
	"callgate/sip/siptest"

	"github.com/emiago/sipgo/sip"
)

func TestInternalCallNotRecordedByDefault(t *testing.T) {
	o := newOffice(t, officeOpts{})
	ctx := withTimeout(t, 15*time.Second)
	from := make(chan *sip.FromHeader, 1)
	go func() {
		c := nextCall(t, o.phones["103"])
		from <- c.Request.From()
		c.Answer(ctx, siptest.SDP("127.0.0.1:30960"))
	}()
	call, err := o.phones["101"].Dial(ctx, "103", siptest.SDP("127.0.0.1:30962"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-o.vpbx.Calls:
		t.Fatal("an internal call went to the VPBX")
	default:
	}
	// The callee's phone shows the caller as the extension at callgate,
	// with the employee's name, not at the VPBX's domain.
	if f := <-from; f.Address.User != "101" || f.Address.Host != "127.0.0.1" || f.DisplayName != "Иванов Иван" {
		t.Fatalf("internal caller shown as %s", f.Value())
	}
	call.Hangup(ctx)
	rec := o.lastCall()
	if rec.Direction != "internal" || !rec.Internal || rec.Result != "answered" || rec.AnsweredBy != "petrov" || len(rec.Legs) != 1 || rec.Legs[0].Recording != "" {
		t.Fatalf("record %+v", rec)
	}
}

func TestInternalCallRecordedWhenConfigured(t *testing.T) {
	o := newOffice(t, officeOpts{RecordInternal: true})
	ctx := withTimeout(t, 15*time.Second)
	go func() { nextCall(t, o.phones["103"]).Answer(ctx, siptest.SDP("127.0.0.1:31004")) }()
	call, err := o.phones["101"].Dial(ctx, "103", siptest.SDP("127.0.0.1:31006"))
	if err != nil {
		t.Fatal(err)
	}
	call.Hangup(ctx)
	rec := o.lastCall()
	if !rec.Internal || len(rec.Legs) != 1 || rec.Legs[0].Recording == "" {
		t.Fatalf("record %+v", rec)
	}
	if _, err := record.ReadInfo(filepath.Join(o.recDir, rec.Legs[0].Recording)); err != nil {
		t.Fatal(err)
	}
}
