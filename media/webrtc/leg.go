package webrtc

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pion "github.com/pion/webrtc/v4"
)

// Leg is one browser's media in one call. Its methods are called from
// the call's goroutine; its packet loops run on goroutines of their own.
type Leg struct {
	e      *Endpoint
	mu     sync.Mutex
	pc     *pion.PeerConnection
	track  *rawTrack
	bridge *net.UDPConn
	relay  atomic.Pointer[netip.AddrPort] // where the relay takes this side's RTP
	ver    uint64
	closed atomic.Bool
	failed chan struct{}
	once   sync.Once
}

// NewLeg opens a leg's loopback socket toward the relay.
func (e *Endpoint) NewLeg() (*Leg, error) {
	if e == nil {
		return nil, errors.New("browser phones need the HTTP listener (http.listen), which serves /sip")
	}
	b, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(e.cfg.Bridge, 0)))
	if err != nil {
		return nil, fmt.Errorf("webrtc bridge: %w", err)
	}
	l := &Leg{e: e, bridge: b, track: &rawTrack{}, failed: make(chan struct{})}
	e.Stats.Open.Add(1)
	go l.toBrowser()
	return l, nil
}

// Failed is closed when the leg's ICE or DTLS fails: the call's media
// timeout ends it all the same, this only says why sooner.
func (l *Leg) Failed() <-chan struct{} { return l.failed }

// newPeer makes the leg's peer connection with the formats of the first
// SDP it sees, under their payload types.
func (l *Leg) newPeer(a audio) error {
	m := &pion.MediaEngine{}
	for _, c := range a.codecs {
		mime := "audio/" + c.name
		if err := m.RegisterCodec(pion.RTPCodecParameters{
			RTPCodecCapability: pion.RTPCodecCapability{MimeType: mime, ClockRate: 8000, Channels: channels(c), SDPFmtpLine: c.fmtp},
			PayloadType:        pion.PayloadType(c.pt),
		}, pion.RTPCodecTypeAudio); err != nil {
			return fmt.Errorf("webrtc codec %s: %w", c.name, err)
		}
	}
	api := pion.NewAPI(pion.WithMediaEngine(m), pion.WithSettingEngine(l.e.se))
	pc, err := api.NewPeerConnection(pion.Configuration{Certificates: []pion.Certificate{l.e.cert}, BundlePolicy: pion.BundlePolicyMaxBundle,
		RTCPMuxPolicy: pion.RTCPMuxPolicyRequire})
	if err != nil {
		return fmt.Errorf("webrtc peer: %w", err)
	}
	pc.OnTrack(func(tr *pion.TrackRemote, rcv *pion.RTPReceiver) {
		go l.fromBrowser(tr)
		go func() {
			// RTCP from the browser ends here: the relay's statistics
			// come from the RTP itself.
			for {
				if _, _, err := rcv.ReadRTCP(); err != nil {
					return
				}
			}
		}()
	})
	pc.OnConnectionStateChange(func(s pion.PeerConnectionState) {
		switch s {
		case pion.PeerConnectionStateConnected:
			l.e.Stats.Connected.Add(1)
		case pion.PeerConnectionStateFailed:
			l.fail(s)
		case pion.PeerConnectionStateClosed:
			// The browser closed DTLS (an alert). It does so when it hangs
			// up, as its BYE goes out, and then the leg is closed by its
			// call within moments: only a close its call does not follow
			// is a failure.
			time.AfterFunc(remoteCloseGrace, func() { l.fail(s) })
		}
	})
	l.pc = pc
	return nil
}

// remoteCloseGrace is how long a leg the browser closed waits for its
// call to close it before the close counts as a failure.
var remoteCloseGrace = 2 * time.Second

// fail reports the leg's media failed (in state s), once, unless the leg
// was closed by its owner.
func (l *Leg) fail(s pion.PeerConnectionState) {
	if l.closed.Load() {
		return
	}
	l.once.Do(func() {
		l.e.Stats.Failed.Add(1)
		l.e.cfg.Log.Warn("webrtc leg failed", "state", s.String())
		close(l.failed)
	})
}

func channels(c codec) uint16 {
	if c.voice {
		return 1
	}
	return 0
}

// FromBrowser takes an SDP the browser sent, an offer or the answer to
// the leg's offer, and returns it as plain RTP SDP of the leg's loopback
// socket, with the browser's formats and direction.
func (l *Leg) FromBrowser(body []byte) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return nil, errors.New("webrtc leg closed")
	}
	_, a, err := parseAudio(body)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(string(body), "a=fingerprint:") {
		return nil, errors.New("sdp: not WebRTC (no DTLS fingerprint)")
	}
	if l.pc == nil {
		if err := l.newPeer(a); err != nil {
			return nil, err
		}
	}
	typ := pion.SDPTypeOffer
	if l.pc.SignalingState() == pion.SignalingStateHaveLocalOffer {
		typ = pion.SDPTypeAnswer
	}
	if err := l.pc.SetRemoteDescription(pion.SessionDescription{Type: typ, SDP: string(body)}); err != nil {
		return nil, fmt.Errorf("webrtc %s: %w", typ, err)
	}
	if typ == pion.SDPTypeOffer && len(l.pc.GetSenders()) == 0 {
		if _, err := l.pc.AddTrack(l.track); err != nil {
			return nil, fmt.Errorf("webrtc track: %w", err)
		}
	}
	l.ver++
	return plainSDP(l.bridge.LocalAddr().(*net.UDPAddr).AddrPort(), a, l.ver), nil
}

// ToBrowser takes the plain SDP callgate would send a phone, an offer or
// the answer to the browser's offer (its address the relay's port for
// this side), and returns it as WebRTC SDP: ICE-lite with the endpoint's
// one candidate, DTLS fingerprint, rtcp-mux, the same formats.
func (l *Leg) ToBrowser(body []byte) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return nil, errors.New("webrtc leg closed")
	}
	_, a, err := parseAudio(body)
	if err != nil {
		return nil, err
	}
	if a.addr.IsValid() {
		to := a.addr
		l.relay.Store(&to)
	}
	if l.pc == nil {
		if err := l.newPeer(a); err != nil {
			return nil, err
		}
		if _, err := l.pc.AddTransceiverFromTrack(l.track, pion.RTPTransceiverInit{Direction: pion.RTPTransceiverDirectionSendrecv}); err != nil {
			return nil, fmt.Errorf("webrtc track: %w", err)
		}
	}
	var desc pion.SessionDescription
	if l.pc.SignalingState() == pion.SignalingStateHaveRemoteOffer {
		desc, err = l.pc.CreateAnswer(nil)
	} else {
		desc, err = l.pc.CreateOffer(nil)
	}
	if err != nil {
		return nil, fmt.Errorf("webrtc: %w", err)
	}
	gathered := pion.GatheringCompletePromise(l.pc)
	if err := l.pc.SetLocalDescription(desc); err != nil {
		return nil, fmt.Errorf("webrtc local description: %w", err)
	}
	<-gathered
	// The direction is the plain SDP's: callgate speaks for the other
	// party, whose hold (an offer) or answer to the browser's hold (pion
	// answers a renegotiated sendonly offer sendrecv, which browsers
	// refuse) it passes on.
	out := withDirection(l.pc.LocalDescription().SDP, a.dir)
	return []byte(out), nil
}

// fromBrowser passes the browser's decrypted RTP to the relay.
func (l *Leg) fromBrowser(tr *pion.TrackRemote) {
	buf := make([]byte, 1500)
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		if to := l.relay.Load(); to != nil {
			_, _ = l.bridge.WriteToUDPAddrPort(buf[:n], *to)
		}
	}
}

// toBrowser passes the relay's RTP to the browser, encrypted. Only the
// relay's port is listened to: the socket is on loopback, but a local
// process must not be able to talk into a call.
func (l *Leg) toBrowser() {
	buf := make([]byte, 1500)
	for {
		n, from, err := l.bridge.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		to := l.relay.Load()
		if to == nil || from != *to || n < 12 {
			continue
		}
		l.track.write(buf[:n])
	}
}

// Close ends the leg: its peer connection and its loopback socket.
func (l *Leg) Close() {
	if l.closed.Swap(true) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pc != nil {
		_ = l.pc.Close()
	}
	l.bridge.Close()
	l.e.Stats.Open.Add(-1)
}

// rawTrack is the leg's outgoing audio: whole RTP packets from the relay,
// written with the SSRC the browser was told of and their own payload
// type (voice or telephone-event, negotiated under the same numbers).
type rawTrack struct {
	mu   sync.RWMutex
	ssrc uint32
	w    pion.TrackLocalWriter
}

func (t *rawTrack) Bind(ctx pion.TrackLocalContext) (pion.RTPCodecParameters, error) {
	codecs := ctx.CodecParameters()
	if len(codecs) == 0 {
		return pion.RTPCodecParameters{}, ErrNoCodec
	}
	t.mu.Lock()
	t.ssrc, t.w = uint32(ctx.SSRC()), ctx.WriteStream()
	t.mu.Unlock()
	for _, c := range codecs {
		if !strings.EqualFold(c.MimeType, "audio/telephone-event") {
			return c, nil
		}
	}
	return codecs[0], nil
}

func (t *rawTrack) Unbind(pion.TrackLocalContext) error {
	t.mu.Lock()
	t.w = nil
	t.mu.Unlock()
	return nil
}

func (t *rawTrack) ID() string              { return "audio" }
func (t *rawTrack) StreamID() string        { return "callgate" }
func (t *rawTrack) RID() string             { return "" }
func (t *rawTrack) Kind() pion.RTPCodecType { return pion.RTPCodecTypeAudio }

func (t *rawTrack) write(pkt []byte) {
	t.mu.RLock()
	w, ssrc := t.w, t.ssrc
	t.mu.RUnlock()
	if w == nil {
		return
	}
	pkt[8], pkt[9], pkt[10], pkt[11] = byte(ssrc>>24), byte(ssrc>>16), byte(ssrc>>8), byte(ssrc)
	_, _ = w.Write(pkt)
}
