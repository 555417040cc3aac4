package webrtc

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"callgate/media/rtptest"
	"callgate/media/webrtc/webrtctest"
)

var loopback = netip.MustParseAddr("127.0.0.1")

func newEndpoint(t *testing.T) *Endpoint {
	t.Helper()
	e, err := New(Config{Bind: loopback, Advertise: loopback})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// relaySDP is the plain SDP the B2BUA writes for a phone: the relay's
// port, G.711 and telephone-event.
func relaySDP(addr netip.AddrPort, dir string) []byte {
	return fmt.Appendf(nil, "v=0\r\no=callgate 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0 8 101\r\n"+
		"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=%s\r\n",
		addr.Addr(), addr.Addr(), addr.Port(), dir)
}

var plainAddr = regexp.MustCompile(`c=IN IP4 (\S+)\r\n[\s\S]*m=audio (\d+) RTP/AVP`)

// bridgeOf is the address a plain SDP of the leg gives the relay.
func bridgeOf(t *testing.T, plain []byte) netip.AddrPort {
	t.Helper()
	m := plainAddr.FindSubmatch(plain)
	if m == nil {
		t.Fatalf("plain SDP without an address:\n%s", plain)
	}
	port, _ := strconv.Atoi(string(m[2]))
	return netip.AddrPortFrom(netip.MustParseAddr(string(m[1])), uint16(port))
}

// talk checks both tones cross the leg: the browser sends 440 Hz, the
// relay's side 1000 Hz.
func talk(t *testing.T, b *webrtctest.Browser, relay *rtptest.Peer) {
	t.Helper()
	select {
	case <-b.Connected():
	case <-time.After(10 * time.Second):
		t.Fatalf("DTLS-SRTP did not come up: %s", b.State())
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if rtptest.Has(b.Heard(500*time.Millisecond), 1000) && rtptest.Has(relay.Heard(500*time.Millisecond), 440) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("tones: browser heard 1000 Hz %v (%d packets), relay heard 440 Hz %v",
		rtptest.Has(b.Heard(500*time.Millisecond), 1000), b.Received(), rtptest.Has(relay.Heard(500*time.Millisecond), 440))
}

func TestCallgateOffersToABrowser(t *testing.T) {
	e := newEndpoint(t)
	relay, err := rtptest.NewPeer(1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	leg, err := e.NewLeg()
	if err != nil {
		t.Fatal(err)
	}
	defer leg.Close()
	offer, err := leg.ToBrowser(relaySDP(relay.Addr(), "sendrecv"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"a=ice-lite", "a=fingerprint:sha-256 ", "a=rtcp-mux", "UDP/TLS/RTP/SAVPF 0 8 101", "a=setup:actpass",
		fmt.Sprintf("a=candidate:%s", ""), fmt.Sprintf(" 127.0.0.1 %d typ host", e.Addr().Port())} {
		if !strings.Contains(string(offer), want) {
			t.Fatalf("offer to the browser lacks %q:\n%s", want, offer)
		}
	}
	b, err := webrtctest.NewBrowser(440, webrtctest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	answer, err := b.Accept(offer)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := leg.FromBrowser(answer)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(plain), "RTP/AVP 0 ") || strings.Contains(string(plain), "fingerprint") || strings.Contains(string(plain), "candidate") {
		t.Fatalf("plain answer:\n%s", plain)
	}
	relay.SendTo(bridgeOf(t, plain))
	talk(t, b, relay)
	if e.Stats.Connected.Load() != 1 || e.Stats.Open.Load() != 1 {
		t.Fatalf("stats: %d connected, %d open", e.Stats.Connected.Load(), e.Stats.Open.Load())
	}
	leg.Close()
	if e.Stats.Open.Load() != 0 {
		t.Fatal("a closed leg still counted")
	}
}

func TestABrowserOffers(t *testing.T) {
	e := newEndpoint(t)
	relay, err := rtptest.NewPeer(1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	leg, b, plain, answer := browserOffers(t, e, relay)
	defer leg.Close()
	defer b.Close()
	if !strings.Contains(string(plain), "a=rtpmap:101 telephone-event/8000") || !strings.Contains(string(plain), "a=sendrecv") {
		t.Fatalf("plain offer:\n%s", plain)
	}
	if !strings.Contains(string(answer), "a=setup:active") || !strings.Contains(string(answer), "a=ice-lite") {
		t.Fatalf("answer to the browser:\n%s", answer)
	}
	talk(t, b, relay)
}

// browserOffers has a browser offer to a new leg of e, the relay (at
// relay) answer, and the relay send to the leg's bridge. It returns the
// leg, the browser, the plain offer and the answer to the browser.
func browserOffers(t *testing.T, e *Endpoint, relay *rtptest.Peer) (*Leg, *webrtctest.Browser, []byte, []byte) {
	t.Helper()
	leg, err := e.NewLeg()
	if err != nil {
		t.Fatal(err)
	}
	b, err := webrtctest.NewBrowser(440, webrtctest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	offer, err := b.Offer()
	if err != nil {
		t.Fatal(err)
	}
	plain, err := leg.FromBrowser(offer)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := leg.ToBrowser(relaySDP(relay.Addr(), "sendrecv"))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Answered(answer); err != nil {
		t.Fatal(err)
	}
	relay.SendTo(bridgeOf(t, plain))
	return leg, b, plain, answer
}

func TestOfferWithoutG711(t *testing.T) {
	e := newEndpoint(t)
	leg, err := e.NewLeg()
	if err != nil {
		t.Fatal(err)
	}
	defer leg.Close()
	b, err := webrtctest.NewBrowser(440, webrtctest.Options{Codecs: []string{"opus"}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	offer, err := b.Offer()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leg.FromBrowser(offer); !errors.Is(err, ErrNoCodec) {
		t.Fatalf("opus-only offer: %v", err)
	}
	if _, err := leg.FromBrowser([]byte("v=0\r\nnot sdp")); err == nil {
		t.Fatal("garbage accepted")
	}
	plainOnly := relaySDP(netip.MustParseAddrPort("127.0.0.1:4000"), "sendrecv")
	if _, err := leg.FromBrowser(plainOnly); err == nil {
		t.Fatal("plain RTP SDP accepted from a browser")
	}
}

// TestFailedDTLS: a browser whose certificate is not the one its SDP
// fingerprints fails the handshake; the leg says so and carries nothing.
func TestFailedDTLS(t *testing.T) {
	e := newEndpoint(t)
	relay, err := rtptest.NewPeer(1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	leg, err := e.NewLeg()
	if err != nil {
		t.Fatal(err)
	}
	defer leg.Close()
	offer, err := leg.ToBrowser(relaySDP(relay.Addr(), "sendrecv"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := webrtctest.NewBrowser(440, webrtctest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	answer, err := b.Accept(offer)
	if err != nil {
		t.Fatal(err)
	}
	forged := regexp.MustCompile(`a=fingerprint:sha-256 [0-9A-F:]+`).ReplaceAll(answer, []byte("a=fingerprint:sha-256 "+strings.TrimSuffix(strings.Repeat("AB:", 32), ":")))
	plain, err := leg.FromBrowser(forged)
	if err != nil {
		t.Fatal(err)
	}
	relay.SendTo(bridgeOf(t, plain))
	select {
	case <-leg.Failed():
	case <-time.After(15 * time.Second):
		t.Fatalf("a forged fingerprint did not fail the leg: leg %s, browser %s", leg.pc.ConnectionState(), b.State())
	}
	if n, _ := relay.Received(); n != 0 {
		t.Fatalf("the relay got %d packets through a failed leg", n)
	}
	if e.Stats.Failed.Load() != 1 {
		t.Fatalf("failed legs: %d", e.Stats.Failed.Load())
	}
}

// A browser hanging up closes DTLS as its BYE goes out: a leg its call
// closes within the grace has not failed; one left open has.
func TestBrowserClosesDTLS(t *testing.T) {
	defer func(g time.Duration) { remoteCloseGrace = g }(remoteCloseGrace)
	remoteCloseGrace = 300 * time.Millisecond
	e := newEndpoint(t)
	relay, err := rtptest.NewPeer(1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	for _, hangup := range []bool{true, false} {
		leg, b, _, _ := browserOffers(t, e, relay)
		talk(t, b, relay)
		failedBefore := e.Stats.Failed.Load()
		b.Close()
		if hangup {
			time.Sleep(50 * time.Millisecond) // the BYE reaching the call
			leg.Close()
			select {
			case <-leg.Failed():
				t.Fatal("a hang-up counted as a failure")
			case <-time.After(3 * remoteCloseGrace):
			}
			if n := e.Stats.Failed.Load(); n != failedBefore {
				t.Fatalf("failed legs %d after a hang-up", n)
			}
			continue
		}
		select {
		case <-leg.Failed():
		case <-time.After(10 * time.Second):
			t.Fatal("a leg the browser closed and nobody else did never failed")
		}
		leg.Close()
		if n := e.Stats.Failed.Load(); n != failedBefore+1 {
			t.Fatalf("failed legs %d, want %d", n, failedBefore+1)
		}
	}
}
