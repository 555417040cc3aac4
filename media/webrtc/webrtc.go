// Package webrtc is the browser phone's media: a WebRTC leg terminates
// ICE (lite: callgate has a known address), DTLS-SRTP and rtcp-mux toward
// the browser with pion, and speaks plain RTP toward the relay from a
// loopback socket of its own, as a desk phone would. The relay session is
// the call's as for any phone, so recording, latching, statistics, DTMF
// (RFC 4733 passes through), hold, transfers and the media timeout need
// nothing of their own. At the SIP side a leg translates SDP: a browser's
// WebRTC SDP into a plain RTP SDP of its loopback socket (FromBrowser), and
// the plain SDP callgate would send a phone into WebRTC SDP (ToBrowser),
// keeping payload types, so packets pass unchanged but for SRTP.
package webrtc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/pion/ice/v4"
	"github.com/pion/transport/v5/stdnet"
	pion "github.com/pion/webrtc/v4"
)

// Config is where a WebRTC endpoint listens and what browsers are told.
type Config struct {
	// Bind is the address the ICE socket listens on (media.bind); Port
	// its UDP port, shared by every browser (0: one the kernel picks).
	Bind netip.Addr
	Port int
	// Advertise is the address browsers send to, the only ICE candidate
	// (the phones' media address).
	Advertise netip.Addr
	// Bridge is the loopback address of the sockets between a leg and the
	// relay (127.0.0.1 when unset).
	Bridge netip.Addr
	// Log gets legs that fail.
	Log *slog.Logger
}

// Stats counts legs; read them with Load.
type Stats struct {
	Open      atomic.Int64  // legs open
	Connected atomic.Uint64 // legs whose DTLS-SRTP came up
	Failed    atomic.Uint64 // legs whose ICE or DTLS failed
}

// Endpoint makes WebRTC legs on one ICE socket, with one certificate.
type Endpoint struct {
	// Stats is updated as legs open, connect and fail.
	Stats Stats

	cfg  Config
	conn net.PacketConn
	mux  ice.UDPMux
	cert pion.Certificate
	se   pion.SettingEngine
}

// New opens the ICE socket and makes the DTLS certificate.
func New(cfg Config) (*Endpoint, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if !cfg.Bridge.IsValid() {
		cfg.Bridge = netip.MustParseAddr("127.0.0.1")
	}
	if !cfg.Advertise.Is4() && !cfg.Advertise.Is4In6() {
		return nil, fmt.Errorf("webrtc: advertised address %s is not IPv4", cfg.Advertise)
	}
	bind := cfg.Bind
	if !bind.IsValid() {
		bind = netip.IPv4Unspecified()
	}
	udp, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(bind.Unmap(), uint16(cfg.Port))))
	if err != nil {
		return nil, fmt.Errorf("webrtc: listen udp %s:%d: %w", bind, cfg.Port, err)
	}
	port := uint16(udp.LocalAddr().(*net.UDPAddr).Port)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		udp.Close()
		return nil, fmt.Errorf("webrtc: key: %w", err)
	}
	cert, err := pion.GenerateCertificate(key)
	if err != nil {
		udp.Close()
		return nil, fmt.Errorf("webrtc: certificate: %w", err)
	}
	// The mux's address is the one candidate browsers get: the advertised
	// address, whatever the socket is bound to.
	conn := &advertised{UDPConn: udp, addr: net.UDPAddrFromAddrPort(netip.AddrPortFrom(cfg.Advertise.Unmap(), port))}
	e := &Endpoint{cfg: cfg, conn: conn, cert: *cert}
	e.mux = pion.NewICEUDPMux(nil, conn)
	se := pion.SettingEngine{}
	se.SetLite(true)
	se.SetICEUDPMux(e.mux)
	se.SetNetworkTypes([]pion.NetworkType{pion.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// The agent's own view of the interfaces is never used (the mux gives
	// the candidate); an empty one spares a netlink socket, which the
	// systemd unit does not allow.
	se.SetNet(&stdnet.Net{})
	e.se = se
	return e, nil
}

// Addr is the ICE socket's address as browsers are told it.
func (e *Endpoint) Addr() netip.AddrPort { return e.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Close closes the ICE socket; legs still open stop carrying media.
func (e *Endpoint) Close() error {
	if e == nil {
		return nil
	}
	return errors.Join(e.mux.Close(), e.conn.Close())
}

// advertised is the ICE socket with the address browsers reach it at.
type advertised struct {
	*net.UDPConn
	addr *net.UDPAddr
}

func (a *advertised) LocalAddr() net.Addr { return a.addr }
