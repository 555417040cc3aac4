package sipstack

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"callgate/gateway/config"
	"callgate/sip/digest"
	"callgate/sip/guard"
	"callgate/sip/location"
	"callgate/sip/registrar"
	"callgate/sip/sipnet"
)

func newStack(t *testing.T, listens ...sipnet.Transport) *Stack {
	t.Helper()
	cfg := config.Defaults()
	cfg.SIP.Listen = nil
	for _, tr := range listens {
		cfg.SIP.Listen = append(cfg.SIP.Listen, config.ListenAddr{Transport: tr, Addr: netip.MustParseAddrPort("127.0.0.1:0")})
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := registrar.New(registrar.Config{}, digest.NewServer("callgate", []digest.Algorithm{"MD5"}, time.Minute), nil,
		guard.New(guard.Config{MaxFailures: 5, MaxFailuresPerIP: 50, Window: time.Minute, BanTime: time.Minute}), location.New())
	s, err := New(&cfg, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Each listen address is bound as its transport's table entry says, and
// each transport gets a Contact naming its own listener: UDP's without a
// transport parameter, TCP's with ;transport=tcp.
func TestListenersAndContactsFollowTheTransportTable(t *testing.T) {
	s := newStack(t, sipnet.UDP, sipnet.TCP)
	udp, okU := s.Local(sipnet.UDP)
	tcp, okT := s.Local(sipnet.TCP)
	if !okU || !okT || udp.Port() == 0 || tcp.Port() == 0 {
		t.Fatalf("locals: udp %v %v, tcp %v %v", udp, okU, tcp, okT)
	}
	if c, err := net.Dial("tcp", tcp.String()); err != nil {
		t.Fatalf("the TCP listener is not bound: %v", err)
	} else {
		c.Close()
	}
	if err := s.Ready(); err == nil {
		t.Fatal("ready before Serve")
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(); err != nil {
		t.Fatalf("not ready after Serve: %v", err)
	}
	cu, _ := s.Contact(sipnet.UDP)
	ct, _ := s.Contact(sipnet.TCP)
	if got := cu.Address.String(); got != "sip:callgate@127.0.0.1:"+itoa(udp.Port()) {
		t.Errorf("UDP contact %s", got)
	}
	if got := ct.Address.String(); got != "sip:callgate@127.0.0.1:"+itoa(tcp.Port())+";transport=tcp" {
		t.Errorf("TCP contact %s", got)
	}
	if p := s.PrimaryContact(); p.Address.String() != cu.Address.String() {
		t.Errorf("primary contact %s, want UDP's", p.String())
	}
	tc := s.TransportContacts()
	tcpc := tc[sipnet.TCP]
	if len(tc) != 1 || tcpc.Address.String() != ct.Address.String() {
		t.Errorf("transport contacts %v", tc)
	}
}

// Listening on TCP alone, callgate's Contact says so everywhere.
func TestTCPOnlyContact(t *testing.T) {
	s := newStack(t, sipnet.TCP)
	if _, ok := s.Local(sipnet.UDP); ok {
		t.Fatal("a UDP listener without one configured")
	}
	if p := s.PrimaryContact(); p.Address.UriParams.GetOr("transport", "") != "tcp" {
		t.Fatalf("primary contact %s lacks transport=tcp", p.String())
	}
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }
