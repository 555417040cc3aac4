package config

import (
	"strings"
	"testing"
	"time"
)

func TestTCPLimitKeys(t *testing.T) {
	c, err := Parse("good.toml", []byte(goodBase))
	if err != nil {
		t.Fatal(err)
	}
	if c.SIP.TCPMaxPerIP != 64 || c.SIP.TCPIdleTimeout.D() != 3*time.Minute {
		t.Fatalf("defaults: max per IP %d, idle timeout %s", c.SIP.TCPMaxPerIP, c.SIP.TCPIdleTimeout.D())
	}
	set := func(keys string) string {
		return strings.Replace(goodBase, "[sip]\n", "[sip]\n"+keys+"\n", 1)
	}
	c, err = Parse("off.toml", []byte(set("tcp_max_per_ip = 0\ntcp_idle_timeout = \"0s\"")))
	if err != nil || c.SIP.TCPMaxPerIP != 0 || c.SIP.TCPIdleTimeout != 0 {
		t.Fatalf("0 must turn both off: %v", err)
	}
	for _, tc := range []struct{ keys, want string }{
		{"tcp_max_per_ip = -1", "3: sip.tcp_max_per_ip: -1 is out of range"},
		{"tcp_max_per_ip = 1000000", "3: sip.tcp_max_per_ip: 1000000 is out of range"},
		{"tcp_idle_timeout = \"500ms\"", "3: sip.tcp_idle_timeout: 500ms is out of range"},
		{"tcp_idle_timeout = \"48h\"", "3: sip.tcp_idle_timeout: 48h0m0s is out of range"},
	} {
		_, err := Parse("bad.toml", []byte(set(tc.keys)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.keys, err, tc.want)
		}
	}
}
