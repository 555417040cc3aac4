package e2e

import (
	"errors"
	"math"
	"path/filepath"
	"testing"
	"time"

	"callgate/media/record"
	"callgate/media/rtptest"
	"callgate/sip/siptest"

	"github.com/emiago/sipgo"
)

func TestInboundCallRingsBothLinesRelaysAndRecords(t *testing.T) {
	o := newOffice(t, officeOpts{})
	outside, employee := tonePeers(t)

	ctx := withTimeout(t, 20*time.Second)
	type result struct {
		call *siptest.Call
		err  error
	}
	done := make(chan result, 1)
	go func() {
		c, err := o.vpbx.Invite(ctx, "sales1", "79161234567", siptest.SDP(outside.Addr().String()))
		done <- result{c, err}
	}()
	line1 := nextCall(t, o.phones["101"])
	line2 := nextCall(t, o.phones["102"])
	if line1.From() != "79161234567" {
		t.Fatalf("phone shows caller %q", line1.From())
	}
	line1.Ringing()
	line2.Ringing()
	answered, err := line1.Answer(ctx, siptest.SDP(employee.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-line2.Gone():
	case <-time.After(5 * time.Second):
		t.Fatal("the second line was not cancelled")
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("VPBX side: %v", r.err)
	}
	talkStart := time.Now()
	toRelayA, err := siptest.MediaAddr(r.call.Remote)
	if err != nil {
		t.Fatal(err)
	}
	toRelayB, err := siptest.MediaAddr(line1.Request.Body())
	if err != nil {
		t.Fatal(err)
	}
	if toRelayA.Addr().String() != "127.0.0.1" || toRelayA == outside.Addr() || toRelayB == employee.Addr() {
		t.Fatalf("SDP not anchored at the relay: %s / %s", toRelayA, toRelayB)
	}
	outside.SendTo(toRelayA)
	employee.SendTo(toRelayB)
	o.d.waitFor("each side hears the other", 5*time.Second, func() bool { return hears(outside, 1000) && hears(employee, 440) })
	if hears(outside, 440) || hears(employee, 1000) {
		t.Fatal("a party hears its own tone")
	}
	if o.d.metric("callgate_calls_active") != 1 {
		t.Fatal("calls_active is not 1 during the call")
	}
	time.Sleep(1500 * time.Millisecond) // talk
	if err := r.call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-answered.Done():
	case <-ctx.Done():
		t.Fatal("phone not hung up")
	}
	talk := time.Since(talkStart)

	rec := o.lastCall()
	if rec.Direction != "inbound" || rec.Result != "answered" || rec.AnsweredBy != "ivanov" || rec.Account != "sales1" ||
		rec.Outside != "+79161234567" || rec.HangupBy != "outside" || len(rec.Legs) != 1 || rec.Legs[0].Extension != "101" {
		t.Fatalf("record %+v", rec)
	}
	if rec.RTP == nil || rec.RTP.Outside.Packets < 50 || rec.RTP.Employee.Packets < 50 || rec.RTP.Outside.Lost != 0 || rec.RTP.Employee.Lost != 0 {
		t.Fatalf("RTP stats %+v", rec.RTP)
	}
	if math.Abs(rec.TalkSeconds-talk.Seconds()) > 0.2 || rec.WaitSeconds <= 0 {
		t.Fatalf("talk %.2fs (measured %.2fs), wait %.2fs", rec.TalkSeconds, talk.Seconds(), rec.WaitSeconds)
	}
	path := filepath.Join(o.recDir, rec.Legs[0].Recording)
	info, err := record.ReadInfo(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := math.Abs(float64(info.Frames)/8000 - rec.TalkSeconds); d > 0.1 {
		t.Fatalf("recording %.3fs, talk %.3fs", float64(info.Frames)/8000, rec.TalkSeconds)
	}
	left, right, _ := record.Channels(path)
	mid := func(ch []float64) []float64 { return ch[len(ch)/4 : 3*len(ch)/4] }
	if !rtptest.Has(mid(left), 440) || rtptest.Has(mid(left), 1000) || !rtptest.Has(mid(right), 1000) || rtptest.Has(mid(right), 440) {
		t.Fatal("recording channels: want 440 Hz left (outside), 1000 Hz right (employee)")
	}
	o.d.waitMetric("callgate_calls_active", 0, 5*time.Second)
	o.d.waitMetric(`callgate_calls_total{direction="inbound",result="answered"}`, 1, 5*time.Second)
}

func TestInboundFailures(t *testing.T) {
	o := newOffice(t, officeOpts{}) // ring_timeout = 3s
	invite := func() chan error {
		ch := make(chan error, 1)
		go func() {
			_, err := o.vpbx.Invite(withTimeout(t, 15*time.Second), "sales1", "79161234567", siptest.SDP("127.0.0.1:30904"))
			ch <- err
		}()
		return ch
	}
	status := func(err error) int {
		var de *sipgo.ErrDialogResponse
		if errors.As(err, &de) {
			return de.Res.StatusCode
		}
		return 0
	}
	// Both lines busy.
	res := invite()
	nextCall(t, o.phones["101"]).Reject(486, "Busy Here")
	nextCall(t, o.phones["102"]).Reject(486, "Busy Here")
	if code := status(<-res); code != 486 {
		t.Fatalf("busy: VPBX got %d", code)
	}
	if rec := o.lastCall(); rec.Result != "busy" {
		t.Fatalf("busy record %+v", rec)
	}
	// One rejects (decline), the other does not answer: ring timeout -> 480.
	res = invite()
	nextCall(t, o.phones["101"]).Reject(603, "Decline")
	silent := nextCall(t, o.phones["102"])
	silent.Ringing()
	start := time.Now()
	if code := status(<-res); code != 480 {
		t.Fatalf("no answer: VPBX got %d", code)
	}
	if waited := time.Since(start); waited < 2500*time.Millisecond || waited > 5*time.Second {
		t.Fatalf("480 after %s, want the 3 s ring timeout", waited)
	}
	select {
	case <-silent.Gone():
	case <-time.After(3 * time.Second):
		t.Fatal("ringing line not cancelled at the timeout")
	}
	if rec := o.lastCall(); rec.Result != "no-answer" {
		t.Fatalf("no-answer record %+v", rec)
	}
	// The caller gives up while the phones ring.
	ctx, cancel := withCancel()
	ch := make(chan error, 1)
	go func() {
		_, err := o.vpbx.Invite(ctx, "sales1", "79161234567", siptest.SDP("127.0.0.1:30904"))
		ch <- err
	}()
	l1, l2 := nextCall(t, o.phones["101"]), nextCall(t, o.phones["102"])
	l1.Ringing()
	cancel() // the VPBX sends CANCEL
	<-ch
	for _, l := range []*siptest.IncomingCall{l1, l2} {
		select {
		case <-l.Gone():
		case <-time.After(5 * time.Second):
			t.Fatal("a line kept ringing after the caller hung up")
		}
	}
	if rec := o.lastCall(); rec.Result != "abandoned" || rec.HangupBy != "outside" {
		t.Fatalf("abandoned record %+v", rec)
	}
	// Nobody registered: unregister everyone, the VPBX gets 480 at once.
	for _, ext := range []string{"101", "102"} {
		o.phones[ext].UnregisterAll(withTimeout(t, 5*time.Second))
	}
	if code := status(<-invite()); code != 480 {
		t.Fatalf("nobody registered: VPBX got %d", code)
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
