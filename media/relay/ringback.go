package relay

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"callgate/media/g711"

	"golang.org/x/sys/unix"
)

// Ringback tone: 425 Hz, 1 s on, 4 s off (the Russian and most European
// cadence). One second of 425 Hz holds exactly 425 cycles, so a one-second
// table loops without a click.
const (
	ringbackHz  = 425
	ringbackOn  = 50  // packets of 20 ms
	ringbackAll = 250 // on + off
)

var (
	ringbackOnce  sync.Once
	ringbackTable [2][8000]byte // [0] PCMU, [1] PCMA
)

func ringbackSamples(pt uint8) *[8000]byte {
	ringbackOnce.Do(func() {
		for i := range 8000 {
			v := int16(0.3 * 32767 * math.Sin(2*math.Pi*ringbackHz*float64(i)/8000))
			ringbackTable[0][i] = g711.Encode(g711.PCMU, v)
			ringbackTable[1][i] = g711.Encode(g711.PCMA, v)
		}
	})
	if pt == g711.PCMA {
		return &ringbackTable[1]
	}
	return &ringbackTable[0]
}

// Ringback plays a ringback tone to side, from the port facing it, as G.711
// with payload type pt (PCMU or PCMA), until stop is called. It is what the
// employee hears during a click-to-call while the client's phone rings and
// the VPBX sends no early media.
func (s *Session) Ringback(side Side, pt uint8) (stop func()) {
	l := s.legs[side]
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		table := ringbackSamples(pt)
		silence := g711.Silence(pt)
		pkt := make([]byte, 12+160)
		pkt[0], pkt[1] = 0x80, pt|0x80 // marker on the first packet
		binary.BigEndian.PutUint32(pkt[8:], rand.Uint32())
		seq, ts := uint16(rand.Uint32()), rand.Uint32()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for n := 0; ; n++ {
			select {
			case <-done:
				return
			case <-t.C:
			}
			binary.BigEndian.PutUint16(pkt[2:], seq)
			binary.BigEndian.PutUint32(pkt[4:], ts)
			payload := pkt[12:]
			if k := n % ringbackAll; k < ringbackOn {
				copy(payload, table[(k%50)*160:])
			} else {
				for i := range payload {
					payload[i] = silence
				}
			}
			if dst := l.remote.Load(); dst != nil {
				sendRaw(l.rtpFD, l.inet4, pkt, *dst)
			}
			pkt[1] = pt
			seq++
			ts += 160
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); <-finished }) }
}

// sendRaw sends one packet outside the forwarding loops (ringback, 50
// packets a second; allocation does not matter here).
func sendRaw(fd int, inet4 bool, pkt []byte, to netip.AddrPort) {
	var sa unix.Sockaddr
	switch {
	case inet4 && to.Addr().Is4():
		sa = &unix.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().As4()}
	case !inet4:
		sa = &unix.SockaddrInet6{Port: int(to.Port()), Addr: to.Addr().As16()}
	default:
		return
	}
	_ = unix.Sendto(fd, pkt, unix.MSG_DONTWAIT, sa)
}
