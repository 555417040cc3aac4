package registrar

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// A new policy applies to the next REGISTER: networks, expiry limits and
// contacts per extension; the bindings made under the old one stay.
func TestSetConfigAppliesToTheNextRequest(t *testing.T) {
	r := newTestRegistrar()
	p := newPhone(t, r, "101", "Phone101pass")
	if res := p.register("Contact: <sip:101@10.0.0.5>\r\nExpires: 120\r\n"); res.StatusCode != 200 {
		t.Fatalf("register: %v", res)
	}
	cfg := *r.conf()
	cfg.AllowNetworks = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	cfg.MinExpires, cfg.MaxExpires = 2*time.Minute, 10*time.Minute
	r.SetConfig(cfg)

	if len(r.Location().Lookup("101", time.Now())) != 1 {
		t.Fatal("the binding made before did not survive the new policy")
	}
	if res := p.register("Contact: <sip:101@10.0.0.5>\r\nExpires: 300\r\n"); res.StatusCode != 403 || !strings.Contains(res.Reason, "Network") {
		t.Fatalf("a network no longer allowed: %v", res)
	}
	p.src.Addr = netip.MustParseAddrPort("10.1.2.3:5060")
	if res := p.register("Contact: <sip:101@10.0.0.5>\r\nExpires: 90\r\n"); res.StatusCode != 423 || res.GetHeader("Min-Expires").Value() != "120" {
		t.Fatalf("the new min_expires: %v", res)
	}
	if res := p.register("Contact: <sip:101@10.0.0.5>\r\nExpires: 3600\r\n"); res.StatusCode != 200 || !strings.Contains(res.GetHeader("Contact").Value(), "expires=600") {
		t.Fatalf("the new max_expires: %v", res)
	}
}
