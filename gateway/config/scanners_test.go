package config

import (
	"strings"
	"testing"
)

func TestScannerUserAgents(t *testing.T) {
	c, err := Parse("good.toml", []byte(goodBase))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.SIP.ScannerUserAgents) != 8 || c.SIP.ScannerUserAgents[0] != "friendly-scanner" {
		t.Fatalf("default scanner list = %q", c.SIP.ScannerUserAgents)
	}
	off := strings.Replace(goodBase, "[sip]\n", "[sip]\nscanner_user_agents = []\n", 1)
	if c, err = Parse("off.toml", []byte(off)); err != nil {
		t.Fatal(err)
	}
	if len(c.SIP.ScannerUserAgents) != 0 {
		t.Fatalf("an empty list must turn the check off, got %q", c.SIP.ScannerUserAgents)
	}
	own := strings.Replace(goodBase, "[sip]\n", "[sip]\nscanner_user_agents = [\"evil-ua\"]\n", 1)
	if c, err = Parse("own.toml", []byte(own)); err != nil {
		t.Fatal(err)
	}
	if len(c.SIP.ScannerUserAgents) != 1 || c.SIP.ScannerUserAgents[0] != "evil-ua" {
		t.Fatalf("a written list must replace the default, got %q", c.SIP.ScannerUserAgents)
	}
	for _, bad := range []string{`""`, `"ab"`, "\"a\\tb\\tc\""} {
		doc := strings.Replace(goodBase, "[sip]\n", "[sip]\nscanner_user_agents = [\"friendly-scanner\", "+bad+"]\n", 1)
		_, err := Parse("bad.toml", []byte(doc))
		if err == nil || !strings.Contains(err.Error(), "bad.toml:3: sip.scanner_user_agents[1]") {
			t.Errorf("%s: want a problem at line 3, got %v", bad, err)
		}
	}
}
