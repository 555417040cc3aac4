// Package rtptest makes and checks real audio for media tests: a tone
// generator, a Goertzel tone detector, and a Peer that sends a tone as G.711
// RTP from a UDP socket and keeps what it hears on the same socket, the way
// a phone does (symmetric RTP).
package rtptest

import (
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"callgate/media/g711"

	"github.com/pion/rtp"
)

// Tone generates a sine wave in 20 ms G.711 frames with continuous phase.
type Tone struct {
	Freq  float64
	PT    uint8
	Level float64 // peak amplitude, 0..1; default 0.3
	n     int
}

// Frame returns the next 160 encoded samples (20 ms at 8 kHz).
func (t *Tone) Frame(dst []byte) []byte {
	level := t.Level
	if level == 0 {
		level = 0.3
	}
	for i := 0; i < 160; i++ {
		s := level * 32767 * math.Sin(2*math.Pi*t.Freq*float64(t.n)/8000)
		dst = append(dst, g711.Encode(t.PT, int16(s)))
		t.n++
	}
	return dst
}

// Power is the Goertzel power of freq in samples (8 kHz), normalised by
// the number of samples so that windows of different lengths compare.
func Power(samples []float64, freq float64) float64 {
	k := 2 * math.Cos(2*math.Pi*freq/8000)
	var s1, s2 float64
	for _, x := range samples {
		s0 := x + k*s1 - s2
		s2, s1 = s1, s0
	}
	p := s1*s1 + s2*s2 - k*s1*s2
	return p / float64(len(samples)*len(samples))
}

// Energy is the mean square of samples.
func Energy(samples []float64) float64 {
	var e float64
	for _, x := range samples {
		e += x * x
	}
	return e / float64(max(len(samples), 1))
}

// Has reports whether freq carries a clear share of the signal's energy
// (a pure tone gives Power ≈ Energy/4).
func Has(samples []float64, freq float64) bool {
	e := Energy(samples)
	if e < 1e-6 {
		return false
	}
	return Power(samples, freq) > e/16
}

// Decode turns G.711 bytes into samples in [-1, 1].
func Decode(pt uint8, b []byte) []float64 {
	out := make([]float64, len(b))
	for i, v := range b {
		out[i] = float64(g711.Decode(pt, v)) / 32768
	}
	return out
}

// Peer sends a tone as RTP and records what it receives.
type Peer struct {
	conn   *net.UDPConn
	tone   Tone
	ssrc   uint32
	remote atomic.Pointer[netip.AddrPort]
	stop   chan struct{}
	wg     sync.WaitGroup

	mu       sync.Mutex
	heard    []byte // payload bytes of audio packets, in arrival order
	events   []byte // RFC 4733 event codes received (one per event, end bit)
	eventTS  uint32
	from     netip.AddrPort
	received int
	sent     atomic.Int64
	dtmf     chan byte
	eventPT  atomic.Uint32 // RFC 4733's payload type, as negotiated (101 unless set)
	// lastAudio is when the last audio packet arrived; gap the longest
	// time between two since ResetGap (see MaxGap).
	lastAudio time.Time
	gap       time.Duration
}

// NewPeer listens on a loopback UDP port and will send freq Hz.
func NewPeer(freq float64, pt uint8) (*Peer, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	p := &Peer{conn: c, tone: Tone{Freq: freq, PT: pt}, ssrc: uint32(time.Now().UnixNano()), stop: make(chan struct{}), dtmf: make(chan byte, 16)}
	p.eventPT.Store(101)
	p.wg.Add(1)
	go p.read()
	return p, nil
}

// Addr is the peer's RTP address (for its SDP).
func (p *Peer) Addr() netip.AddrPort { return p.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// SendTo starts (or redirects) sending 20 ms packets to remote.
func (p *Peer) SendTo(remote netip.AddrPort) {
	first := p.remote.Swap(&remote) == nil
	if first {
		p.wg.Add(1)
		go p.send()
	}
}

// DTMF sends one RFC 4733 digit event now (payload type 101, or as set
// by SetEventPT).
func (p *Peer) DTMF(digit byte) {
	p.dtmf <- digit
}

// SetEventPT sets the payload type of RFC 4733 events sent and received,
// as the SDP negotiated it (browsers offer their own, such as 126).
func (p *Peer) SetEventPT(pt uint8) { p.eventPT.Store(uint32(pt)) }

func (p *Peer) send() {
	defer p.wg.Done()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	start, frames := time.Now(), 0
	seq := uint16(1000)
	ts := uint32(160000)
	buf := make([]byte, 0, 200)
	out := make([]byte, 1500)
	write := func(pkt *rtp.Packet) {
		n, err := pkt.MarshalTo(out)
		if err != nil {
			return
		}
		if r := p.remote.Load(); r != nil {
			if _, err := p.conn.WriteToUDPAddrPort(out[:n], *r); err == nil {
				p.sent.Add(1)
			}
		}
	}
	for {
		select {
		case <-p.stop:
			return
		case d := <-p.dtmf:
			// Three packets of the event, the last with the end bit (RFC 4733 §2.5.1.4).
			for i := 0; i < 3; i++ {
				seq++
				end := byte(0)
				if i == 2 {
					end = 0x80
				}
				write(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: uint8(p.eventPT.Load()), SequenceNumber: seq, Timestamp: ts, SSRC: p.ssrc, Marker: i == 0},
					Payload: []byte{d, end | 10, 0, byte(160 * (i + 1))}})
			}
		case now := <-t.C:
			// Paced by the clock, as a phone's sound card is: when this
			// goroutine ran late (a busy test machine; the ticker drops
			// ticks), every frame due is sent now, so the stream's
			// timestamps keep up with real time.
			due := int(now.Sub(start)/(20*time.Millisecond)) - frames
			if due > 50 { // a second behind: skip ahead rather than flood
				ts += uint32(160 * (due - 1))
				frames += due - 1
				due = 1
			}
			for range due {
				seq++
				ts += 160
				frames++
				buf = p.tone.Frame(buf[:0])
				write(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: p.tone.PT, SequenceNumber: seq, Timestamp: ts, SSRC: p.ssrc}, Payload: buf})
			}
		}
	}
}

func (p *Peer) read() {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := p.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		var pkt rtp.Packet
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		p.mu.Lock()
		p.received++
		p.from = from
		switch {
		case uint32(pkt.PayloadType) == p.eventPT.Load():
			// One event = one RTP timestamp; its end packet may be repeated.
			if len(pkt.Payload) >= 4 && pkt.Payload[1]&0x80 != 0 && (len(p.events) == 0 || pkt.Timestamp != p.eventTS) {
				p.events = append(p.events, pkt.Payload[0])
				p.eventTS = pkt.Timestamp
			}
		case pkt.PayloadType == p.tone.PT:
			p.heard = append(p.heard, pkt.Payload...)
			now := time.Now()
			if !p.lastAudio.IsZero() {
				p.gap = max(p.gap, now.Sub(p.lastAudio))
			}
			p.lastAudio = now
		}
		p.mu.Unlock()
	}
}

// Heard returns the last d of received audio as samples.
func (p *Peer) Heard(d time.Duration) []float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := int(d.Seconds() * 8000)
	b := p.heard
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return Decode(p.tone.PT, b)
}

// ResetGap starts measuring MaxGap afresh from now.
func (p *Peer) ResetGap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gap, p.lastAudio = 0, time.Now()
}

// MaxGap is the longest time without audio since ResetGap: between two
// packets, or from the last one until now.
func (p *Peer) MaxGap() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(p.gap, time.Since(p.lastAudio))
}

// Received is the number of RTP packets received and the last source.
func (p *Peer) Received() (int, netip.AddrPort) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.received, p.from
}

// Events returns the DTMF digits received.
func (p *Peer) Events() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]byte(nil), p.events...)
}

// Sent is the number of packets sent.
func (p *Peer) Sent() int64 { return p.sent.Load() }

// Close stops sending and receiving.
func (p *Peer) Close() {
	close(p.stop)
	p.conn.Close()
	p.wg.Wait()
}
