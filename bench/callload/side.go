package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// side is one UDP socket that all streams of one side (outside parties or
// phones) share, driven with sendmmsg/recvmmsg.
type side struct {
	conn  *net.UDPConn
	pc    *ipv4.PacketConn
	local netip.AddrPort
	done  sync.WaitGroup
	msgs  []ipv4.Message // send scratch, used by the single sender goroutine
}

// outPkt is one packet to send.
type outPkt struct {
	buf []byte
	to  netip.AddrPort
}

func newSide(ip netip.Addr) *side {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_ = c.SetReadBuffer(8 << 20)
	_ = c.SetWriteBuffer(8 << 20)
	// Kernel receive timestamps: latency is measured to the moment a packet
	// reached this socket, not to when this process got around to reading it.
	if raw, err := c.SyscallConn(); err == nil {
		_ = raw.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1) })
	}
	return &side{conn: c, pc: ipv4.NewPacketConn(c), local: c.LocalAddr().(*net.UDPAddr).AddrPort()}
}

func (s *side) addr() string { return s.local.String() }

// send writes pkts with sendmmsg and returns how many went out.
func (s *side) send(pkts []outPkt) int {
	s.msgs = s.msgs[:0]
	for _, p := range pkts {
		s.msgs = append(s.msgs, ipv4.Message{Buffers: [][]byte{p.buf}, Addr: net.UDPAddrFromAddrPort(p.to)})
	}
	sent := 0
	for sent < len(s.msgs) {
		n, err := s.pc.WriteBatch(s.msgs[sent:], 0)
		if err != nil || n == 0 {
			break
		}
		sent += n
	}
	return sent
}

// read demultiplexes received packets to their endpoints by SSRC until the
// side is closed, and samples every tenth packet's latency.
func (s *side) read(bySSRC map[uint32]*endpoint) {
	defer s.done.Done()
	msgs := make([]ipv4.Message, 64)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 1500)}
		msgs[i].OOB = make([]byte, 64)
	}
	var local []time.Duration
	n := 0
	for {
		k, err := s.pc.ReadBatch(msgs, 0)
		if err != nil {
			break
		}
		now := time.Now().UnixNano()
		for _, m := range msgs[:k] {
			b := m.Buffers[0][:m.N]
			if len(b) < 20 {
				continue
			}
			e := bySSRC[binary.BigEndian.Uint32(b[8:])]
			if e == nil {
				continue
			}
			seq := uint32(binary.BigEndian.Uint16(b[2:]))
			if e.first.Load() == 0 {
				e.first.Store(seq + 1)
			}
			if seq > e.maxSeq.Load() {
				e.maxSeq.Store(seq)
			}
			e.got.Add(1)
			n++
			sample := n%10 == 0 && len(local) < 200000
			if !sample && rl == nil {
				continue
			}
			at := now
			if ts, ok := rxTime(m.OOB[:m.NN]); ok {
				at = ts
			}
			lat := at - int64(binary.BigEndian.Uint64(b[12:]))
			rl.arrived(e, at, lat)
			if sample {
				local = append(local, time.Duration(lat))
			}
		}
	}
	latMu.Lock()
	lats = append(lats, local...)
	latMu.Unlock()
}

func (s *side) close() {
	s.conn.Close()
	s.done.Wait()
}

// rxTime finds the SCM_TIMESTAMPNS control message (struct timespec) in a
// received packet's ancillary data.
func rxTime(oob []byte) (int64, bool) {
	const hdr = 16 // struct cmsghdr on 64-bit Linux
	for len(oob) >= hdr {
		l := int(binary.NativeEndian.Uint64(oob))
		level := int32(binary.NativeEndian.Uint32(oob[8:]))
		typ := int32(binary.NativeEndian.Uint32(oob[12:]))
		if l < hdr || l > len(oob) {
			return 0, false
		}
		if level == unix.SOL_SOCKET && typ == unix.SCM_TIMESTAMPNS && l >= hdr+16 {
			sec := int64(binary.NativeEndian.Uint64(oob[hdr:]))
			nsec := int64(binary.NativeEndian.Uint64(oob[hdr+8:]))
			return sec*1e9 + nsec, true
		}
		oob = oob[(l+7)&^7:]
	}
	return 0, false
}
