package sipws

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// parseOrigin reads an origin (RFC 6454: scheme, host and port) from an
// Origin header or a URL and writes it in one form, so that
// "HTTPS://Example.org:443" and "https://example.org" compare equal.
// Anything but http and https, a path, user information or a missing host
// is an error: an Origin header never carries them.
func parseOrigin(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("origin %q: %w", s, err)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", fmt.Errorf("origin %q: scheme is not http or https", s)
	}
	if u.Host == "" || u.User != nil || u.Opaque != "" || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return "", fmt.Errorf("origin %q: not scheme://host[:port]", s)
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if host == "" {
		return "", errors.New("origin without a host")
	}
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if port != "" {
		host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return scheme + "://" + host, nil
}
