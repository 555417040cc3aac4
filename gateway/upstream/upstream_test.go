package upstream

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"callgate/gateway/config"
	"callgate/sip/resolve/dnstest"
	"callgate/sip/sipnet"

	"github.com/emiago/sipgo/sip"
)

// fakeStack listens on UDP only and hands every request it is asked to
// send to sent, answering nothing.
type fakeStack struct {
	trusted *sipnet.NetworkSet
	sent    chan *sip.Request
}

func (s *fakeStack) Local(tr sipnet.Transport) (netip.AddrPort, bool) {
	return netip.MustParseAddrPort("127.0.0.1:5060"), tr == sipnet.UDP
}
func (s *fakeStack) ContactHostPort(tr sipnet.Transport) string { return "127.0.0.1:5060" }
func (s *fakeStack) Trusted() *sipnet.NetworkSet                { return s.trusted }
func (s *fakeStack) Send(ctx context.Context, req *sip.Request, _ string) (*sip.Response, error) {
	select {
	case s.sent <- req:
	default:
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// The configuration's names reach the parts: the registrar is looked up
// with [dns]'s server for the trunk's REGISTERs (over the transports
// callgate listens on), and the trusted name's address joins the trusted
// networks once Run has looked it up.
func TestWiredFromConfig(t *testing.T) {
	dns, err := dnstest.New()
	if err != nil {
		t.Fatal(err)
	}
	defer dns.Close()
	dns.MustSet("_sip._udp.vpbx.test. 60 IN SRV 10 1 5070 sip.vpbx.test.",
		"_sip._tcp.vpbx.test. 60 IN SRV 5 1 5080 sip.vpbx.test.",
		"sip.vpbx.test. 60 IN A 127.0.0.3",
		"vpbx.test. 60 IN A 127.0.0.4")
	cfg, err := config.Parse("t.toml", []byte(fmt.Sprintf(`data_dir = "/tmp/cg"
[upstream]
registrar = "vpbx.test"
domain = "vpbx.test"
trusted_sources = ["vpbx.test", "10.0.0.0/8"]
register_timeout = "200ms"
[[upstream.account]]
user = "sales1"
password = "Secret123"
[dns]
servers = [%q]
`, dns.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	stack := &fakeStack{trusted: sipnet.NewNetworkSet(cfg.Upstream.TrustedSources.Prefixes()), sent: make(chan *sip.Request, 8)}
	v := New(cfg, stack, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if v.Trunk == nil || v.Target.String() != "vpbx.test" {
		t.Fatalf("trunk %v, target %q", v.Trunk, v.Target)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { v.Run(ctx); close(done) }()
	select {
	case req := <-stack.sent:
		// TCP's SRV record comes first by priority, but callgate does not
		// listen on TCP.
		if req.Destination() != "127.0.0.3:5070" || req.Transport() != "UDP" || req.Contact().Address.Port != 5060 {
			t.Fatalf("REGISTER to %s over %s, Contact %s", req.Destination(), req.Transport(), req.Contact().Address.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no REGISTER sent")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !stack.trusted.Contains(netip.MustParseAddr("127.0.0.4")) || !stack.trusted.Contains(netip.MustParseAddr("127.0.0.3")) {
		if time.Now().After(deadline) {
			t.Fatalf("trusted %v", stack.trusted.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !stack.trusted.Contains(netip.MustParseAddr("10.1.2.3")) || stack.trusted.Contains(netip.MustParseAddr("127.0.0.5")) {
		t.Fatalf("trusted %v", stack.trusted.Load())
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
}
