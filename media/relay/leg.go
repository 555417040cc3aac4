package relay

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// leg is the port pair facing one party.
type leg struct {
	side    Side
	session *Session
	other   *leg
	port    int
	rtpFD   int
	rtcpFD  int
	inet4   bool    // the sockets are AF_INET
	socks   []*sock // RTP and RTCP as registered with the session's worker

	remote     atomic.Pointer[netip.AddrPort] // where this party receives RTP
	remoteRTCP atomic.Pointer[netip.AddrPort]
	latched    atomic.Bool
	signalled  atomic.Pointer[netip.AddrPort] // the address the party's SDP gave
	parked     atomic.Bool                    // nothing is sent to this party (see Park)
	last       atomic.Int64                   // unix ns of the last RTP packet from this party

	packets, bytes, lost atomic.Uint64
	jitter               atomic.Uint64 // in RTP timestamp units (1/8 ms)

	// receive-side sequence state, owned by the session's worker
	seqInit             bool
	maxSeq              uint16
	cycles              uint32
	baseSeq             uint32
	transit             int64
	jitterQ4            int64 // jitter * 16, RFC 3550 A.8
	received, lostTotal uint64
}

// Stats describes the RTP a party sent to callgate.
type Stats struct {
	Packets  uint64        `json:"packets"`
	Bytes    uint64        `json:"bytes"`
	Lost     uint64        `json:"lost"`
	Jitter   time.Duration `json:"jitter"`
	Latched  bool          `json:"latched"`
	LastSeen time.Time     `json:"last_seen,omitzero"`
}

func (l *leg) stats() Stats {
	s := Stats{Packets: l.packets.Load(), Bytes: l.bytes.Load(), Lost: l.lost.Load(),
		Jitter: time.Duration(l.jitter.Load()) * time.Second / 8000, Latched: l.latched.Load()}
	if ns := l.last.Load(); ns > 0 {
		s.LastSeen = time.Unix(0, ns)
	}
	return s
}

// close closes sockets that were never handed to a worker.
func (l *leg) close() {
	unix.Close(l.rtpFD)
	unix.Close(l.rtcpFD)
}

// accept latches the party's address on its first packet and then only
// takes packets from that address. The callers drop packets from a parked
// party before asking, so late packets cannot latch it back.
func (l *leg) accept(from netip.AddrPort, rtcp bool) bool {
	if !l.latched.Load() {
		if rtcp {
			return false // latch on RTP only; RTCP follows the RTP address
		}
		a := from
		l.remote.Store(&a)
		c := netip.AddrPortFrom(from.Addr(), from.Port()+1)
		l.remoteRTCP.Store(&c)
		l.latched.Store(true)
		return true
	}
	want := l.remote.Load()
	if !rtcp && want != nil && *want != from {
		// The party the signalling named wins over whatever latched first:
		// after a transfer the old phone may still be sending for a moment.
		if sig := l.signalled.Load(); sig != nil && *sig == from {
			a := from
			l.remote.Store(&a)
			c := netip.AddrPortFrom(from.Addr(), from.Port()+1)
			l.remoteRTCP.Store(&c)
			return true
		}
	}
	if rtcp {
		want = l.remoteRTCP.Load()
		if want != nil && *want != from && want.Addr() == from.Addr() {
			// RTCP from a port other than RTP+1 (rtcp-mux-less NAT): follow it.
			c := from
			l.remoteRTCP.Store(&c)
			return true
		}
	}
	return want != nil && *want == from
}

// rtpIn checks and accounts one RTP packet from the party, taps it for
// recording, and returns where to forward it (nil: drop).
func (l *leg) rtpIn(pkt []byte, from netip.AddrPort) *netip.AddrPort {
	r := l.session.relay
	if l.parked.Load() {
		return nil // the party talks elsewhere for now (consultation)
	}
	if len(pkt) < 12 || pkt[0]>>6 != 2 || !l.accept(from, false) {
		r.Dropped.Add(1)
		return nil
	}
	now := time.Now()
	l.last.Store(now.UnixNano())
	l.account(pkt, now)
	dst := l.other.remote.Load()
	if dst == nil {
		if !l.other.parked.Load() {
			r.Dropped.Add(1)
		}
		return nil
	}
	if t := l.session.tap.Load(); t != nil {
		hdr := 12 + 4*int(pkt[0]&0x0f)
		if pkt[0]&0x10 != 0 && len(pkt) >= hdr+4 {
			hdr += 4 + 4*int(binary.BigEndian.Uint16(pkt[hdr+2:]))
		}
		if hdr <= len(pkt) {
			(*t)(l.side, binary.BigEndian.Uint16(pkt[2:]), binary.BigEndian.Uint32(pkt[4:]), pkt[1]&0x7f, pkt[hdr:])
		}
	}
	return dst
}

// rtcpIn checks one RTCP packet from the party and returns where to forward
// it (nil: drop).
func (l *leg) rtcpIn(pkt []byte, from netip.AddrPort) *netip.AddrPort {
	if l.parked.Load() {
		return nil
	}
	if len(pkt) < 8 || !l.accept(from, true) {
		l.session.relay.Dropped.Add(1)
		return nil
	}
	dst := l.other.remoteRTCP.Load()
	if dst == nil && !l.other.parked.Load() {
		l.session.relay.Dropped.Add(1)
	}
	return dst
}

// account updates loss and jitter the way RFC 3550 appendix A does.
func (l *leg) account(pkt []byte, now time.Time) {
	l.packets.Add(1)
	l.bytes.Add(uint64(len(pkt)))
	seq := binary.BigEndian.Uint16(pkt[2:])
	ts := binary.BigEndian.Uint32(pkt[4:])
	if pkt[1]&0x7f == 101 {
		return // DTMF events keep one timestamp; they do not count for jitter
	}
	if !l.seqInit {
		l.seqInit = true
		l.maxSeq = seq
		l.baseSeq = uint32(seq)
		l.received = 1
	} else {
		delta := seq - l.maxSeq
		switch {
		case delta == 0:
			// duplicate
		case delta < 0x8000:
			if seq < l.maxSeq {
				l.cycles += 1 << 16
			}
			l.maxSeq = seq
			l.received++
		default:
			l.received++ // late/reordered packet
		}
		expected := uint64(l.cycles) + uint64(l.maxSeq) - uint64(l.baseSeq) + 1
		if expected > l.received {
			l.lostTotal = expected - l.received
		} else {
			l.lostTotal = 0
		}
		l.lost.Store(l.lostTotal)
	}
	arrival := now.UnixNano() * 8000 / int64(time.Second)
	transit := arrival - int64(ts)
	if l.transit != 0 {
		d := transit - l.transit
		if d < 0 {
			d = -d
		}
		l.jitterQ4 += d - (l.jitterQ4+8)>>4
		l.jitter.Store(uint64(l.jitterQ4 >> 4))
	}
	l.transit = transit
}
