package b2bua

import (
	"cmp"
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"callgate/sip/siptest"

	"github.com/emiago/sipgo/sip"
)

// What the office's parties (office_test.go) got: every request a phone or
// the VPBX received is kept in order, for a test to wait for and inspect.

// reqLog keeps the requests a test party got, in order.
type reqLog struct {
	who     string
	mu      sync.Mutex
	reqs    []*sip.Request
	changed signal
}

// recordRequests keeps what arrives on ch until the test ends.
func recordRequests(t *testing.T, who string, ch <-chan *sip.Request) *reqLog {
	l := &reqLog{who: who}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		for {
			select {
			case req := <-ch:
				l.mu.Lock()
				l.reqs = append(l.reqs, req)
				l.mu.Unlock()
				l.changed.notify()
			case <-stop:
				return
			}
		}
	}()
	return l
}

// phoneLog is a test phone whose received requests are kept.
type phoneLog struct {
	*siptest.Phone
	*reqLog
	rtp string // the RTP address its SDP names
}

func newPhoneLog(t *testing.T, ext, server string) *phoneLog {
	p, err := siptest.NewPhone(siptest.PhoneConfig{User: ext, Password: "pw" + ext, Server: server})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return &phoneLog{Phone: p, reqLog: recordRequests(t, ext, p.Requests), rtp: "127.0.0.1:30" + ext}
}

func (p *phoneLog) sdp() []byte { return siptest.SDP(p.rtp) }

// rtpAddr is the phone's RTP address as the B2BUA parses it from its SDP.
func (p *phoneLog) rtpAddr() netip.AddrPort { return netip.MustParseAddrPort(p.rtp) }

// matching are the requests got so far that match.
func (p *reqLog) matching(match func(*sip.Request) bool) []*sip.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*sip.Request
	for _, r := range p.reqs {
		if match(r) {
			out = append(out, r)
		}
	}
	return out
}

// await waits for the first request that matches.
func (p *reqLog) await(t testing.TB, what string, match func(*sip.Request) bool) *sip.Request {
	t.Helper()
	var got *sip.Request
	await(t, p.who+": "+what, &p.changed, func() bool {
		if m := p.matching(match); len(m) > 0 {
			got = m[0]
		}
		return got != nil
	})
	return got
}

// ring waits for the phone's next incoming call.
func (p *phoneLog) ring(t testing.TB) *siptest.IncomingCall {
	t.Helper()
	select {
	case in := <-p.Calls:
		return in
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not ring", p.User())
		return nil
	}
}

// answer waits for the phone to ring and answers with its SDP.
func (p *phoneLog) answer(ctx context.Context, t testing.TB) (*siptest.IncomingCall, *siptest.Call) {
	t.Helper()
	in := p.ring(t)
	c, err := in.Answer(ctx, p.sdp())
	if err != nil {
		t.Fatal(err)
	}
	return in, c
}

// frags are the sipfrag status lines of the refer NOTIFYs the phone got,
// in the order they were sent (a phone notes a request after answering
// it, so two NOTIFYs in a row may be noted the other way round).
func (p *reqLog) frags() []string {
	notifies := p.matching(isReferNotify)
	slices.SortStableFunc(notifies, func(a, b *sip.Request) int { return cmp.Compare(a.CSeq().SeqNo, b.CSeq().SeqNo) })
	var out []string
	for _, r := range notifies {
		out = append(out, strings.TrimSpace(string(r.Body())))
	}
	return out
}

// awaitFrags waits until the refer NOTIFYs the phone got are want.
func (p *reqLog) awaitFrags(t testing.TB, want ...string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		changed := p.changed.wait()
		got := p.frags()
		if slices.Equal(got, want) {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%s: refer NOTIFYs %q, want %q", p.who, got, want)
		}
	}
}

func isReferNotify(r *sip.Request) bool {
	ev := r.GetHeader("Event")
	return r.Method == sip.NOTIFY && ev != nil && ev.Value() == "refer"
}

// reinviteTo matches a re-INVITE whose SDP names the relay's port.
func reinviteTo(port int) func(*sip.Request) bool {
	return func(r *sip.Request) bool {
		if r.Method != sip.INVITE || !r.To().Params.Has("tag") {
			return false
		}
		a, err := siptest.MediaAddr(r.Body())
		return err == nil && int(a.Port()) == port
	}
}

// byeIn matches a BYE in dialog callID.
func byeIn(callID string) func(*sip.Request) bool {
	return func(r *sip.Request) bool { return r.Method == sip.BYE && r.CallID().Value() == callID }
}

// offerPort is the relay port an INVITE's SDP offers.
func offerPort(t testing.TB, body []byte) int {
	t.Helper()
	a, err := siptest.MediaAddr(body)
	if err != nil {
		t.Fatalf("%v in %q", err, body)
	}
	return int(a.Port())
}
