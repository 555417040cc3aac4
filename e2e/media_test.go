package e2e

import (
	"path/filepath"
	"testing"
	"time"

	"callgate/media/record"
	"callgate/media/rtptest"
	"callgate/sip/siptest"

	"github.com/emiago/sipgo/sip"
)

func TestKill9MidCallKeepsRecordingAndMarksInterrupted(t *testing.T) {
	o := newOffice(t, officeOpts{})
	outside, employee := tonePeers(t)
	ctx := withTimeout(t, 20*time.Second)
	call, _, line := o.inbound(ctx, outside.Addr().String(), employee.Addr().String())
	a, _ := siptest.MediaAddr(call.Remote)
	b, _ := siptest.MediaAddr(line.Request.Body())
	outside.SendTo(a)
	employee.SendTo(b)
	audioFrom := time.Now()
	o.d.waitFor("audio", 5*time.Second, func() bool { return hears(outside, 1000) && hears(employee, 440) })
	time.Sleep(2200 * time.Millisecond) // more than two header rewrites
	o.d.kill()
	before := time.Since(audioFrom).Seconds()

	// Restart on the same data: the recording is repaired and the call closed.
	d2 := startDaemon(t, o.d.cfg)
	rec := func() string {
		res, err := d2.get("/api/v1/calls?limit=1", true)
		if err != nil {
			return ""
		}
		defer res.Body.Close()
		var l struct {
			Calls []struct {
				Result string
				Legs   []struct{ Recording string }
			}
		}
		if decodeJSON(res, &l) != nil || len(l.Calls) != 1 || len(l.Calls[0].Legs) != 1 {
			return ""
		}
		if l.Calls[0].Result != "interrupted" {
			return ""
		}
		return l.Calls[0].Legs[0].Recording
	}
	var path string
	d2.waitFor("the call recorded as interrupted", 5*time.Second, func() bool { path = rec(); return path != "" })
	full := filepath.Join(o.recDir, path)
	info, err := record.ReadInfo(full)
	if err != nil {
		t.Fatal(err)
	}
	if secs := float64(info.Frames) / 8000; secs < before-1 {
		t.Fatalf("repaired recording holds %.2fs of the %.2fs before the kill: more than the last second lost", secs, before)
	}
	left, right, _ := record.Channels(full)
	if !rtptest.Has(left[2000:12000], 440) || !rtptest.Has(right[2000:12000], 1000) {
		t.Fatal("repaired recording lost its audio")
	}
	d2.stop()
}

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

func TestEarlyMediaReachesThePhoneBeforeAnswer(t *testing.T) {
	o := newOffice(t, officeOpts{})
	outside, employee := tonePeers(t)
	ctx := withTimeout(t, 15*time.Second)
	dialled := make(chan *siptest.Call, 1)
	go func() {
		c, err := o.phones["103"].Dial(ctx, "84951234567", siptest.SDP(employee.Addr().String()))
		if err == nil {
			dialled <- c
		}
	}()
	var in *siptest.IncomingCall
	select {
	case in = <-o.vpbx.Calls:
	case <-ctx.Done():
		t.Fatal("no INVITE at the VPBX")
	}
	if err := in.Progress(siptest.SDP(outside.Addr().String())); err != nil {
		t.Fatal(err)
	}
	toRelay, _ := siptest.MediaAddr(in.Request.Body())
	outside.SendTo(toRelay)
	o.d.waitFor("ringback heard before the answer", 5*time.Second, func() bool { return hears(employee, 440) })
	select {
	case <-dialled:
		t.Fatal("the phone's call was answered before the VPBX answered")
	default:
	}
	vpbxCall, err := in.Answer(ctx, siptest.SDP(outside.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	phoneCall := <-dialled
	phoneCall.Hangup(ctx)
	<-vpbxCall.Done()
}

func TestMediaTimeoutHangsUpBothSides(t *testing.T) {
	o := newOffice(t, officeOpts{MediaTimeout: "2s"})
	ctx := withTimeout(t, 15*time.Second)
	vpbxSide, phoneSide, _ := o.inbound(ctx, "127.0.0.1:30970", "127.0.0.1:30972")
	start := time.Now()
	// Nobody sends RTP: both legs get BYE from callgate.
	for _, c := range []*siptest.Call{phoneSide, vpbxSide} {
		select {
		case <-c.Done():
		case <-ctx.Done():
			t.Fatal("no BYE after the media timeout")
		}
	}
	if waited := time.Since(start); waited < 1500*time.Millisecond {
		t.Fatalf("hung up after %s, before the 2 s media timeout", waited)
	}
	rec := o.lastCall()
	if rec.HangupBy != "timeout" || rec.Reason != "media timeout" || rec.Result != "answered" {
		t.Fatalf("record %+v", rec)
	}
}

func TestSequentialGroupRingsMemberAfterMember(t *testing.T) {
	o := newOffice(t, officeOpts{Extra: `[[upstream.account]]
user = "support"
password = "Secret456"
group = "support"
[[group]]
id = "support"
strategy = "sequential"
members = ["ivanov", "petrov"]
ring_timeout = "1s"
`})
	o.d.waitMetric(`callgate_upstream_registered{account="support"}`, 1, 10*time.Second)
	ctx := withTimeout(t, 15*time.Second)
	done := make(chan error, 1)
	go func() {
		c, err := o.vpbx.Invite(ctx, "support", "79161234567", siptest.SDP("127.0.0.1:30980"))
		if err == nil {
			c.Hangup(ctx)
		}
		done <- err
	}()
	// ivanov's two lines ring first; nobody answers them.
	first := []*siptest.IncomingCall{nextCall(t, o.phones["101"]), nextCall(t, o.phones["102"])}
	select {
	case <-o.phones["103"].Calls:
		t.Fatal("petrov rang together with ivanov")
	default:
	}
	start := time.Now()
	petrov := nextCall(t, o.phones["103"])
	if waited := time.Since(start); waited < 700*time.Millisecond {
		t.Fatalf("petrov rang %s after ivanov, before ivanov's 1 s", waited)
	}
	for _, l := range first {
		select {
		case <-l.Gone():
		case <-time.After(time.Second):
			t.Fatal("ivanov's line kept ringing after his turn")
		}
	}
	if _, err := petrov.Answer(ctx, siptest.SDP("127.0.0.1:30982")); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rec := o.lastCall()
	if rec.AnsweredBy != "petrov" || len(rec.Rung) != 2 || rec.Rung[0] != "ivanov" || rec.Account != "support" {
		t.Fatalf("record %+v", rec)
	}
}

// The VPBX is told the office's public address (NAT), the phones the LAN one.
func TestUpstreamAdvertiseInSDPTowardVPBX(t *testing.T) {
	o := newOffice(t, officeOpts{UpstreamAdvertise: "198.51.100.7"})
	ctx := withTimeout(t, 15*time.Second)
	vpbxSide, _, in := o.inbound(ctx, "127.0.0.1:31000", "127.0.0.1:31002")
	toVPBX, _ := siptest.MediaAddr(vpbxSide.Remote)
	toPhone, _ := siptest.MediaAddr(in.Request.Body())
	if toVPBX.Addr().String() != "198.51.100.7" || toPhone.Addr().String() != "127.0.0.1" {
		t.Fatalf("SDP toward the VPBX %s, toward the phone %s", toVPBX, toPhone)
	}
	vpbxSide.Hangup(ctx)
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
