package relay

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// FuzzPackets feeds arbitrary datagrams, as RTP and RTCP from either
// party, to a session's receive path (header checks, latching, loss and
// jitter accounting, the recording tap). Each fuzz input is a sequence of
// packets: a control byte (bit 0: side, bit 1: RTCP, bit 2: from a
// stranger), a length byte, then the packet.
func FuzzPackets(f *testing.F) {
	rtpPkt := func(seq uint16, ts uint32, pt byte, ext bool, csrc byte) []byte {
		p := make([]byte, 12, 200)
		p[0] = 0x80 | csrc&0x0f
		if ext {
			p[0] |= 0x10
		}
		p[1] = pt
		binary.BigEndian.PutUint16(p[2:], seq)
		binary.BigEndian.PutUint32(p[4:], ts)
		p = append(p, make([]byte, 4*int(csrc&0x0f))...)
		if ext {
			p = append(p, 0xbe, 0xde, 0x00, 0x01, 1, 2, 3, 4)
		}
		return append(p, make([]byte, 160)...)
	}
	seed := func(pkts ...[]byte) []byte {
		var out []byte
		for i, p := range pkts {
			out = append(out, byte(i%2), byte(len(p)))
			out = append(out, p...)
		}
		return out
	}
	f.Add(seed(rtpPkt(1, 160, 0, false, 0), rtpPkt(1, 160, 8, false, 0), rtpPkt(2, 320, 0, true, 2)))
	f.Add(seed(rtpPkt(65535, 0, 101, false, 15), rtpPkt(0, 1<<31, 0, true, 0)))
	f.Add([]byte{2, 8, 0x80, 200, 0, 6, 1, 2, 3, 4})                  // RTCP sender report header
	f.Add([]byte{0, 13, 0x9f, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xff}) // extension bit, no room for it

	parties := [2]netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:40000"), netip.MustParseAddrPort("127.0.0.1:40002")}
	stranger := netip.MustParseAddrPort("127.0.0.2:40000")

	f.Fuzz(func(t *testing.T, data []byte) {
		// The receive path without sockets: what the worker calls for each
		// datagram, so every input runs from the same fresh state.
		s := &Session{id: "fuzz", relay: &Relay{}}
		s.legs = [2]*leg{{side: A, session: s}, {side: B, session: s}}
		s.legs[A].other, s.legs[B].other = s.legs[B], s.legs[A]
		s.SetRemote(A, parties[A])
		s.SetRemote(B, parties[B])
		var heard [2]bool // the party's own RTP got through, so its address is latched
		var cur []byte
		s.SetTap(func(side Side, seq uint16, ts uint32, pt uint8, payload []byte) {
			if len(payload) > len(cur)-12 {
				t.Fatalf("tap payload of %d bytes from a %d-byte packet", len(payload), len(cur))
			}
		})
		for len(data) >= 2 {
			ctl, n := data[0], int(data[1])
			data = data[2:]
			if n > len(data) {
				n = len(data)
			}
			cur = data[:n]
			data = data[n:]
			side := Side(ctl & 1)
			from := parties[side]
			if ctl&4 != 0 {
				from = stranger
			}
			l := s.legs[side]
			var dst *netip.AddrPort
			if ctl&2 != 0 {
				dst = l.rtcpIn(cur, netip.AddrPortFrom(from.Addr(), from.Port()+1))
			} else {
				dst = l.rtpIn(cur, from)
			}
			if dst != nil && from == stranger && heard[side] {
				t.Fatalf("a packet from %s was forwarded after %s latched", from, parties[side])
			}
			if dst != nil && ctl&6 == 0 {
				heard[side] = true
			}
		}
	})
}
