package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"callgate/gateway/calls"
	"callgate/media/g711"
	"callgate/media/record"
	"callgate/media/rtptest"
	"callgate/sip/siptest"
)

// office is a running callgate with a VPBX stand-in and registered phones.
type office struct {
	t      *testing.T
	d      *daemon
	vpbx   *siptest.VPBX
	phones map[string]*siptest.Phone
	recDir string
}

// officeOpts vary the office's configuration.
type officeOpts struct {
	MinFree      string // recording.min_free, default "0"
	MediaTimeout string // media.timeout, default "10s"
	Extra        string // more TOML (accounts, groups)
	// UpstreamAdvertise is media.upstream_advertise; RecordInternal is recording.internal.
	UpstreamAdvertise string
	RecordInternal    bool
	// HTTPExtra and IvanovExtra go into the [http] table and ivanov's
	// [[employee]] table.
	HTTPExtra, IvanovExtra string
	PetrovExtra            string
	// Without lists extensions that get no siptest phone (another peer,
	// such as Linphone, registers them).
	Without []string
}

func newOffice(t *testing.T, opts officeOpts) *office {
	if opts.MinFree == "" {
		opts.MinFree = "0"
	}
	if opts.MediaTimeout == "" {
		opts.MediaTimeout = "10s"
	}
	t.Helper()
	vpbx, err := siptest.NewVPBX(siptest.VPBXConfig{Domain: "vpbx.test", Accounts: map[string]string{"sales1": "Secret123", "support": "Secret456"}, Grant: 300, ChallengeInvites: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vpbx.Close)
	cfg := newDaemonConfig(t, "")
	cfg.HTTPExtra, cfg.IvanovExtra, cfg.PetrovExtra = strings.ReplaceAll(opts.HTTPExtra, "HTTPPORT", strconv.Itoa(cfg.HTTPPort)), opts.IvanovExtra, opts.PetrovExtra
	recDir := filepath.Join(cfg.DataDir, "recordings")
	port := 40000 + (cfg.SIPPort%200)*100
	cfg.Extra = upstreamSection(vpbx.Addr()) + fmt.Sprintf(`[media]
rtp_ports = "%d-%d"
bind = "127.0.0.1"
timeout = %q
upstream_advertise = %q
[calls]
ring_timeout = "3s"
[recording]
dir = %q
min_free = %q
internal = %v
%s`, port, port+99, opts.MediaTimeout, opts.UpstreamAdvertise, recDir, opts.MinFree, opts.RecordInternal, opts.Extra)
	o := &office{t: t, d: startDaemon(t, cfg), vpbx: vpbx, phones: map[string]*siptest.Phone{}, recDir: recDir}
	o.d.waitMetric(`callgate_upstream_registered{account="sales1"}`, 1, 10*time.Second)
	for ext, pass := range map[string]string{"101": "Phone101pass", "102": "Phone101pass", "103": "Phone103pass"} {
		if slices.Contains(opts.Without, ext) {
			continue
		}
		p := newPhone(t, o.d, siptest.PhoneConfig{User: ext, Password: pass})
		mustRegister(t, p)
		o.phones[ext] = p
	}
	return o
}

func (o *office) lastCall() calls.Record {
	o.t.Helper()
	var list struct{ Calls []calls.Record }
	o.d.waitFor("a call in the history", 10*time.Second, func() bool {
		res, err := o.d.get("/api/v1/calls?limit=1", true)
		if err != nil {
			return false
		}
		defer res.Body.Close()
		list.Calls = nil
		return json.NewDecoder(res.Body).Decode(&list) == nil && len(list.Calls) == 1 && !list.Calls[0].Ended.IsZero()
	})
	return list.Calls[0]
}

func nextCall(t *testing.T, p *siptest.Phone) *siptest.IncomingCall {
	t.Helper()
	select {
	case c := <-p.Calls:
		return c
	case <-time.After(5 * time.Second):
		t.Fatalf("phone %s did not ring", p.User())
		return nil
	}
}

func hears(p *rtptest.Peer, freq float64) bool {
	return rtptest.Has(p.Heard(400*time.Millisecond), freq)
}

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

// inbound has the VPBX call sales1 (ivanov, lines 101 and 102) with the
// outside party's RTP at outsideRTP, lets line 101 answer with phoneRTP,
// and returns both ends of the established call.
func (o *office) inbound(ctx context.Context, outsideRTP, phoneRTP string) (vpbxSide, phoneSide *siptest.Call, in *siptest.IncomingCall) {
	o.t.Helper()
	done := make(chan *siptest.Call, 1)
	go func() {
		c, err := o.vpbx.Invite(ctx, "sales1", "79161234567", siptest.SDP(outsideRTP))
		if err == nil {
			done <- c
		}
	}()
	in = nextCall(o.t, o.phones["101"])
	phoneSide, err := in.Answer(ctx, siptest.SDP(phoneRTP))
	if err != nil {
		o.t.Fatal(err)
	}
	select {
	case vpbxSide = <-done:
	case <-ctx.Done():
		o.t.Fatal("the VPBX side was not answered")
	}
	return vpbxSide, phoneSide, in
}

// tonePeers are the outside party (440 Hz) and the employee (1000 Hz), each
// sending G.711 A-law RTP and keeping what it hears.
func tonePeers(t *testing.T) (outside, employee *rtptest.Peer) {
	t.Helper()
	outside, err := rtptest.NewPeer(440, g711.PCMA)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(outside.Close)
	employee, err = rtptest.NewPeer(1000, g711.PCMA)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(employee.Close)
	return outside, employee
}
