package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The API trusts loopback proxies and bounds its connections without any
// configuration; the settings replace the defaults.
func TestHTTPLimitDefaults(t *testing.T) {
	c, err := Parse("good.toml", []byte(goodBase))
	if err != nil {
		t.Fatal(err)
	}
	h := c.HTTP
	if fmt.Sprint(h.TrustedProxies) != "[127.0.0.0/8 ::1/128]" || h.ProxyHeader != "X-Forwarded-For" {
		t.Fatalf("proxy defaults: %v %q", h.TrustedProxies, h.ProxyHeader)
	}
	if h.ReadTimeout.D() != 30*time.Second || h.WriteTimeout.D() != time.Minute || h.IdleTimeout.D() != 2*time.Minute || h.MaxHeaderBytes != 64<<10 {
		t.Fatalf("timeout defaults: %+v", h)
	}
	c, err = Parse("good.toml", []byte("[http]\ntrusted_proxies = []\nproxy_header = \"Forwarded\"\nidle_timeout = \"1s\"\n"+goodBase[strings.Index(goodBase, "[sip]"):]))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.HTTP.TrustedProxies) != 0 || c.HTTP.ProxyHeader != "Forwarded" || c.HTTP.IdleTimeout.D() != time.Second {
		t.Fatalf("settings not applied: %+v", c.HTTP)
	}
}

func TestHTTPLimitErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"[http]\ntrusted_proxies = [\"127.0.0.1\"]\n", "2: http.trusted_proxies[0]: \"127.0.0.1\" is not a CIDR"},
		{"[http]\nproxy_header = \"X-Real-IP\"\n", "2: http.proxy_header: unknown header"},
		{"[http]\nread_timeout = \"0s\"\n", "2: http.read_timeout: 0s is out of range"},
		{"[http]\nwrite_timeout = \"2h\"\n", "2: http.write_timeout"},
		{"[http]\nidle_timeout = \"100ms\"\n", "2: http.idle_timeout"},
		{"[http]\nmax_header_bytes = 100\n", "2: http.max_header_bytes: 100 is out of range"},
	} {
		_, err := Parse("bad.toml", []byte(tc.doc))
		var ce *Error
		if !errors.As(err, &ce) {
			t.Fatalf("%q: got %v, want a config error", tc.doc, err)
		}
		found := false
		for _, p := range ce.Problems {
			if strings.HasPrefix(p.String(), "bad.toml:"+tc.want) && p.Hint != "" {
				found = true
			}
		}
		if !found {
			t.Errorf("want a problem starting %q with a hint, got:\n%v", tc.want, err)
		}
	}
}
