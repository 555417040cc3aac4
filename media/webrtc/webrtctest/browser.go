// Package webrtctest is a browser's WebRTC audio for tests and load
// tools: a full-ICE pion peer on loopback that sends a tone in G.711 over
// DTLS-SRTP and records what it hears, as Chromium does with a WAV file
// for a microphone.
package webrtctest

import (
	"fmt"
	"sync"
	"time"

	"callgate/media/rtptest"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	pion "github.com/pion/webrtc/v4"
)

// Browser is one browser tab's peer connection.
type Browser struct {
	pc    *pion.PeerConnection
	track *pion.TrackLocalStaticRTP
	tone  rtptest.Tone
	stop  chan struct{}
	up    chan struct{}
	once  sync.Once
	wg    sync.WaitGroup

	mu    sync.Mutex
	heard []byte
	got   int
}

// Options vary a Browser.
type Options struct {
	// Codecs are the G.711 codecs it offers, "PCMU" and/or "PCMA"
	// (default both, PCMU first); "opus" makes an offer without G.711.
	Codecs []string
}

// NewBrowser makes a peer that will send freq Hz once connected.
func NewBrowser(freq float64, opts Options) (*Browser, error) {
	if opts.Codecs == nil {
		opts.Codecs = []string{"PCMU", "PCMA"}
	}
	m := &pion.MediaEngine{}
	pts := map[string]pion.PayloadType{"PCMU": 0, "PCMA": 8, "opus": 111}
	first := ""
	for _, c := range opts.Codecs {
		rate, ch := uint32(8000), uint16(1)
		if c == "opus" {
			rate, ch = 48000, 2
		}
		if first == "" {
			first = c
		}
		if err := m.RegisterCodec(pion.RTPCodecParameters{RTPCodecCapability: pion.RTPCodecCapability{MimeType: "audio/" + c, ClockRate: rate, Channels: ch}, PayloadType: pts[c]}, pion.RTPCodecTypeAudio); err != nil {
			return nil, err
		}
	}
	if err := m.RegisterCodec(pion.RTPCodecParameters{RTPCodecCapability: pion.RTPCodecCapability{MimeType: "audio/telephone-event", ClockRate: 8000, SDPFmtpLine: "0-16"}, PayloadType: 101}, pion.RTPCodecTypeAudio); err != nil {
		return nil, err
	}
	se := pion.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]pion.NetworkType{pion.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	pc, err := pion.NewAPI(pion.WithMediaEngine(m), pion.WithSettingEngine(se)).NewPeerConnection(pion.Configuration{})
	if err != nil {
		return nil, err
	}
	pt := uint8(pts[first])
	track, err := pion.NewTrackLocalStaticRTP(pion.RTPCodecCapability{MimeType: "audio/" + first, ClockRate: 8000, Channels: 1}, "audio", "browser")
	if err != nil {
		pc.Close()
		return nil, err
	}
	if _, err := pc.AddTrack(track); err != nil {
		pc.Close()
		return nil, err
	}
	b := &Browser{pc: pc, track: track, tone: rtptest.Tone{Freq: freq, PT: pt}, stop: make(chan struct{}), up: make(chan struct{})}
	pc.OnTrack(func(tr *pion.TrackRemote, _ *pion.RTPReceiver) {
		b.wg.Add(1)
		go b.read(tr)
	})
	pc.OnConnectionStateChange(func(s pion.PeerConnectionState) {
		if s == pion.PeerConnectionStateConnected {
			b.once.Do(func() {
				close(b.up)
				b.wg.Add(1)
				go b.send()
			})
		}
	})
	return b, nil
}

// Offer is the browser's offer (an INVITE's body).
func (b *Browser) Offer() ([]byte, error) {
	o, err := b.pc.CreateOffer(nil)
	if err != nil {
		return nil, err
	}
	return b.setLocal(o)
}

// Accept takes callgate's offer and returns the browser's answer.
func (b *Browser) Accept(offer []byte) ([]byte, error) {
	if err := b.pc.SetRemoteDescription(pion.SessionDescription{Type: pion.SDPTypeOffer, SDP: string(offer)}); err != nil {
		return nil, fmt.Errorf("browser: callgate's offer: %w", err)
	}
	a, err := b.pc.CreateAnswer(nil)
	if err != nil {
		return nil, err
	}
	return b.setLocal(a)
}

// Answered takes callgate's answer to the browser's offer.
func (b *Browser) Answered(answer []byte) error {
	if err := b.pc.SetRemoteDescription(pion.SessionDescription{Type: pion.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		return fmt.Errorf("browser: callgate's answer: %w", err)
	}
	return nil
}

func (b *Browser) setLocal(d pion.SessionDescription) ([]byte, error) {
	done := pion.GatheringCompletePromise(b.pc)
	if err := b.pc.SetLocalDescription(d); err != nil {
		return nil, err
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		return nil, fmt.Errorf("browser: ICE gathering did not complete")
	}
	return []byte(b.pc.LocalDescription().SDP), nil
}

// Connected is closed once DTLS-SRTP is up.
func (b *Browser) Connected() <-chan struct{} { return b.up }

// State is the peer connection's state ("connected", "failed"...).
func (b *Browser) State() string { return b.pc.ConnectionState().String() }

func (b *Browser) send() {
	defer b.wg.Done()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	var seq uint16
	var ts uint32
	buf := make([]byte, 0, 160)
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		seq++
		ts += 160
		_ = b.track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts}, Payload: b.tone.Frame(buf[:0])})
	}
}

func (b *Browser) read(tr *pion.TrackRemote) {
	defer b.wg.Done()
	for {
		p, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		b.mu.Lock()
		b.got++
		if p.PayloadType == b.tone.PT {
			b.heard = append(b.heard, p.Payload...)
		}
		b.mu.Unlock()
	}
}

// Heard is the last d of audio received, as samples.
func (b *Browser) Heard(d time.Duration) []float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := int(d.Seconds() * 8000)
	h := b.heard
	if len(h) > n {
		h = h[len(h)-n:]
	}
	return rtptest.Decode(b.tone.PT, h)
}

// Received is how many RTP packets arrived.
func (b *Browser) Received() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.got
}

// Close hangs up the peer connection.
func (b *Browser) Close() {
	select {
	case <-b.stop:
		return
	default:
	}
	close(b.stop)
	_ = b.pc.Close()
	b.wg.Wait()
}
