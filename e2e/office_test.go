package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
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

	"github.com/emiago/sipgo/sip"
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
	// RTPPorts is the size of the RTP port range (default 100: 25 calls).
	RTPPorts int
	// Format is recording.format ("": WAV, see daemonConfig.Format).
	Format string
	// Without lists extensions that get no siptest phone (another peer,
	// such as Linphone, registers them).
	Without []string
	// NoNetlink runs callgate as the systemd unit restricts it (no AF_NETLINK).
	NoNetlink bool
	// ShutdownGrace is calls.shutdown_grace, default "0s": a test that
	// stops the daemon with calls up does not wait for them.
	ShutdownGrace string
}

func newOffice(t *testing.T, opts officeOpts) *office {
	if opts.MinFree == "" {
		opts.MinFree = "0"
	}
	if opts.MediaTimeout == "" {
		opts.MediaTimeout = "10s"
	}
	if opts.ShutdownGrace == "" {
		opts.ShutdownGrace = "0s"
	}
	if opts.RTPPorts == 0 {
		opts.RTPPorts = 100
	}
	t.Helper()
	vpbx, err := siptest.NewVPBX(siptest.VPBXConfig{Domain: "vpbx.test", Accounts: map[string]string{"sales1": "Secret123", "support": "Secret456"}, Grant: 300, ChallengeInvites: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vpbx.Close)
	cfg := newDaemonConfig(t, "")
	cfg.Format, cfg.NoNetlink = opts.Format, opts.NoNetlink
	cfg.HTTPExtra, cfg.IvanovExtra, cfg.PetrovExtra = strings.ReplaceAll(opts.HTTPExtra, "HTTPPORT", strconv.Itoa(cfg.HTTPPort)), opts.IvanovExtra, opts.PetrovExtra
	recDir := filepath.Join(cfg.DataDir, "recordings")
	port := portBlock(t, opts.RTPPorts)
	rtpRange := fmt.Sprintf("%d-%d", port, port+opts.RTPPorts-1)
	cfg.Extra = upstreamSection(vpbx.Addr()) + fmt.Sprintf(`[media]
rtp_ports = %q
bind = "127.0.0.1"
timeout = %q
upstream_advertise = %q
[calls]
ring_timeout = "3s"
shutdown_grace = %q
[recording]
dir = %q
min_free = %q
internal = %v
%s`, rtpRange, opts.MediaTimeout, opts.UpstreamAdvertise, opts.ShutdownGrace, recDir, opts.MinFree, opts.RecordInternal, opts.Extra)
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

// upstreamSection is the [upstream] table that registers ivanov's account
// sales1 at registrar, with short timers so the tests see retries quickly.
func upstreamSection(registrar string) string {
	return fmt.Sprintf(`[upstream]
registrar = "udp:%s"
domain = "vpbx.test"
trusted_sources = ["127.0.0.1/32"]
expires = "60s"
register_timeout = "500ms"
retry_min = "400ms"
retry_max = "10s"
[[upstream.account]]
user = "sales1"
password = "Secret123"
employee = "ivanov"
`, registrar)
}

// secondTrunk is a store's line: calls from +74951112233 leave through the
// "support" account; "ghost" is an account the VPBX refuses, so it never
// registers.
const secondTrunk = `[[upstream.account]]
user = "support"
password = "Secret456"
employee = "petrov"
number = "+74951112233"
[[upstream.account]]
user = "ghost"
password = "Secret789"
employee = "petrov"
number = "+74950000000"
`

const (
	ivanovToken = "ivanov-e2e-token-0123456789"
	petrovToken = "petrov-e2e-token-0123456789"
)

// employeeTokens gives ivanov (101, 102) and petrov (103) their own tokens.
var employeeTokens = fmt.Sprintf(`[[http.token]]
scope = "employee:ivanov"
token = %q
[[http.token]]
scope = "employee:petrov"
token = %q
`, ivanovToken, petrovToken)

func newPhone(t *testing.T, d *daemon, cfg siptest.PhoneConfig) *siptest.Phone {
	t.Helper()
	cfg.Server = d.sipAddr()
	p, err := siptest.NewPhone(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func mustRegister(t *testing.T, p *siptest.Phone) {
	t.Helper()
	res, err := p.Register(withTimeout(t, 5*time.Second), 300)
	if err != nil {
		t.Fatalf("register %s: %v", p.User(), err)
	}
	if res.StatusCode != 200 {
		t.Fatalf("register %s: %d %s", p.User(), res.StatusCode, res.Reason)
	}
}

// waitOptions waits for callgate's keepalive OPTIONS at the phone.
func waitOptions(t *testing.T, p *siptest.Phone, timeout time.Duration) *sip.Request {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case r := <-p.Requests:
			if r.Method == sip.OPTIONS {
				return r
			}
		case <-deadline:
			t.Fatalf("phone %s got no OPTIONS within %s", p.User(), timeout)
			return nil
		}
	}
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

// talking puts an inbound call from the VPBX through to ivanov's line 101
// (102 is cancelled) and waits until outside and ivanov hear each other.
func (o *office) talking(ctx context.Context, outside, ivanov *rtptest.Peer) (vpbxSide, ivanovSide *siptest.Call, in *siptest.IncomingCall) {
	o.t.Helper()
	vpbxSide, ivanovSide, in = o.inbound(ctx, outside.Addr().String(), ivanov.Addr().String())
	<-nextCall(o.t, o.phones["102"]).Gone()
	toA, _ := siptest.MediaAddr(vpbxSide.Remote)
	toB, _ := siptest.MediaAddr(in.Request.Body())
	outside.SendTo(toA)
	ivanov.SendTo(toB)
	o.d.waitFor("outside and ivanov talk", 5*time.Second, func() bool { return hears(outside, 1000) && hears(ivanov, 440) })
	return vpbxSide, ivanovSide, in
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

// activeCallID is the id of the newest call, still in progress.
func (o *office) activeCallID() string {
	o.t.Helper()
	var list struct{ Calls []calls.Record }
	o.d.waitFor("a call in progress", 5*time.Second, func() bool {
		res, err := o.d.get("/api/v1/calls?limit=1", true)
		if err != nil {
			return false
		}
		defer res.Body.Close()
		list.Calls = nil
		return json.NewDecoder(res.Body).Decode(&list) == nil && len(list.Calls) == 1 && list.Calls[0].Ended.IsZero()
	})
	return list.Calls[0].ID
}

// shortCall places an inbound call from the VPBX to account, which rings
// ivanov's two lines; ivanov answers on 101 and the caller hangs up 300 ms
// later. It returns how long after the INVITE the phone rang.
func (o *office) shortCall(ctx context.Context, account, from string) time.Duration {
	o.t.Helper()
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		if c, err := o.vpbx.Invite(ctx, account, from, siptest.SDP("127.0.0.1:30999")); err == nil {
			time.Sleep(300 * time.Millisecond)
			_ = c.Hangup(ctx)
		}
	}()
	in, other := nextCall(o.t, o.phones["101"]), nextCall(o.t, o.phones["102"])
	rang := time.Since(start)
	if _, err := in.Answer(ctx, siptest.SDP("127.0.0.1:30998")); err != nil {
		o.t.Fatal(err)
	}
	<-other.Gone()
	<-done
	return rang
}

// recordingHas asserts a leg's recording: the outside party's tone on the
// left, the employee's on the right.
func (o *office) recordingHas(leg calls.Leg, left, right float64) {
	o.t.Helper()
	if leg.Recording == "" {
		o.t.Fatalf("leg %+v has no recording", leg)
	}
	l, r, err := record.Channels(filepath.Join(o.recDir, leg.Recording))
	if err != nil {
		o.t.Fatal(err)
	}
	mid := func(ch []float64) []float64 { return ch[len(ch)/4 : 3*len(ch)/4] }
	if !rtptest.Has(mid(l), left) || !rtptest.Has(mid(r), right) {
		o.t.Fatalf("recording %s: want %g Hz left and %g Hz right", leg.Recording, left, right)
	}
}

// reinviteTo waits for a re-INVITE at a phone and returns the relay
// address it names.
func reinviteTo(t *testing.T, p *siptest.Phone, timeout time.Duration) netip.AddrPort {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case req := <-p.Requests:
			if req.Method == "INVITE" && req.To().Params.Has("tag") {
				a, err := siptest.MediaAddr(req.Body())
				if err != nil {
					t.Fatal(err)
				}
				return a
			}
		case <-deadline:
			t.Fatalf("no re-INVITE at %s", p.User())
		}
	}
}

// sipfrags collects the sipfrag status lines of NOTIFYs a phone receives.
func sipfrags(t *testing.T, p *siptest.Phone, until string, timeout time.Duration) []string {
	t.Helper()
	var got []string
	deadline := time.After(timeout)
	for {
		select {
		case req := <-p.Requests:
			if req.Method != "NOTIFY" {
				continue
			}
			if ev := req.GetHeader("Event"); ev == nil || ev.Value() != "refer" {
				t.Fatalf("NOTIFY without Event: refer")
			}
			line := strings.TrimSpace(string(req.Body()))
			got = append(got, line)
			if strings.HasPrefix(line, until) {
				return got
			}
		case <-deadline:
			t.Fatalf("no NOTIFY %q; got %v", until, got)
		}
	}
}
