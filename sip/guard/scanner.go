package guard

import (
	"bytes"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// DefaultScannerUserAgents are User-Agent substrings of SIP scanners and
// brute-force tools (SIPVicious, sipcli, SIPScan and friends). Legitimate
// phones never send them.
var DefaultScannerUserAgents = []string{
	"friendly-scanner", "sipvicious", "sipcli", "VaxSIPUserAgent", "sip-scan", "iWar", "SIPScan", "pplsip",
}

// Scanners recognises scanner user agents by case-insensitive substring.
// A nil or empty Scanners matches nothing. It is safe for concurrent use.
type Scanners struct {
	subs [][]byte // lower case
}

// NewScanners returns a matcher for the given substrings; empty ones are
// ignored.
func NewScanners(list []string) *Scanners {
	s := &Scanners{}
	for _, x := range list {
		if x = strings.TrimSpace(x); x != "" {
			s.subs = append(s.subs, []byte(strings.ToLower(x)))
		}
	}
	return s
}

// Enabled reports whether any substring is configured.
func (s *Scanners) Enabled() bool { return s != nil && len(s.subs) > 0 }

// Match reports whether the User-Agent value ua is a scanner's.
func (s *Scanners) Match(ua string) bool {
	if !s.Enabled() || ua == "" {
		return false
	}
	return s.match([]byte(ua))
}

func (s *Scanners) match(ua []byte) bool {
	var buf [256]byte
	if len(ua) > len(buf) {
		ua = ua[:len(buf)]
	}
	low := buf[:len(ua)]
	for i, c := range ua {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		low[i] = c
	}
	for _, sub := range s.subs {
		if bytes.Contains(low, sub) {
			return true
		}
	}
	return false
}

// MatchMessage reports whether a raw SIP message (a datagram, before any
// parsing) carries a scanner's User-Agent, and returns that User-Agent. It
// reads only the header block, line by line, so it can run on the socket
// reader for every datagram.
func (s *Scanners) MatchMessage(msg []byte) (string, bool) {
	if !s.Enabled() {
		return "", false
	}
	if end := bytes.Index(msg, []byte("\r\n\r\n")); end >= 0 {
		msg = msg[:end]
	}
	const name = "user-agent"
	for len(msg) > 0 {
		line := msg
		if i := bytes.IndexByte(msg, '\n'); i >= 0 {
			line, msg = msg[:i], msg[i+1:]
		} else {
			msg = nil
		}
		if len(line) <= len(name) || (line[0]|0x20) != 'u' || !bytes.EqualFold(line[:len(name)], []byte(name)) {
			continue
		}
		rest := bytes.TrimLeft(line[len(name):], " \t")
		if len(rest) == 0 || rest[0] != ':' {
			continue
		}
		if ua := bytes.TrimSpace(rest[1:]); s.match(ua) {
			return string(ua), true
		}
	}
	return "", false
}

// Quieter lets one log line per key through per interval, so that a scan of
// thousands of packets leaves one line per source a minute. It holds at
// most a bounded number of keys.
type Quieter struct {
	every time.Duration
	now   func() time.Time
	mu    sync.Mutex
	last  map[netip.Addr]time.Time
	swept time.Time
}

// NewQuieter returns a limiter letting one event per IP through every d.
func NewQuieter(d time.Duration) *Quieter {
	return &Quieter{every: d, now: time.Now, last: map[netip.Addr]time.Time{}}
}

// Allow reports whether an event for ip may be logged now.
func (q *Quieter) Allow(ip netip.Addr) bool {
	now := q.now()
	q.mu.Lock()
	defer q.mu.Unlock()
	if t, ok := q.last[ip]; ok && now.Sub(t) < q.every {
		return false
	}
	if len(q.last) >= 4096 && now.Sub(q.swept) >= q.every {
		q.swept = now
		for k, t := range q.last {
			if now.Sub(t) >= q.every {
				delete(q.last, k)
			}
		}
	}
	if len(q.last) >= 4096 {
		return false
	}
	q.last[ip] = now
	return true
}
