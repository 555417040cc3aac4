// Package dnstest is a DNS server on loopback for tests: it answers
// authoritatively from a zone the test sets and changes while it runs,
// over UDP and TCP on the same port, and counts the questions it got.
package dnstest

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/miekg/dns"
)

// Mode is how the server answers.
type Mode int32

// Modes.
const (
	Answer   Mode = iota // from the zone
	ServFail             // SERVFAIL to everything
	Silent               // no answer at all
)

// Server is the DNS server.
type Server struct {
	udp, tcp *dns.Server
	mode     atomic.Int32
	// TruncateUDP makes every answer over UDP empty with the TC bit,
	// so that the client must ask again over TCP.
	truncate atomic.Bool

	mu      sync.Mutex
	records []dns.RR
	asked   map[string]int // "name TYPE" -> questions
}

// New starts a server on 127.0.0.1 (a free port, UDP and TCP).
func New() (*Server, error) {
	s := &Server{asked: map[string]int{}}
	var pc net.PacketConn
	var ln net.Listener
	var err error
	for range 20 {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("dnstest: no port free for both UDP and TCP: %w", err)
	}
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	s.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serve), NotifyStartedFunc: notify}
	s.tcp = &dns.Server{Listener: ln, Handler: dns.HandlerFunc(s.serve), NotifyStartedFunc: notify}
	go func() { _ = s.udp.ActivateAndServe() }()
	go func() { _ = s.tcp.ActivateAndServe() }()
	<-started
	<-started
	return s, nil
}

// Addr is the server's "127.0.0.1:port".
func (s *Server) Addr() string { return s.udp.PacketConn.LocalAddr().String() }

// Close stops the server.
func (s *Server) Close() {
	_ = s.udp.Shutdown()
	_ = s.tcp.Shutdown()
}

// Set replaces the zone with records written as in a zone file
// ("_sip._udp.vpbx.test. 2 IN SRV 10 1 5060 a.vpbx.test.",
// "a.vpbx.test. 2 IN A 127.0.0.1"); names are absolute.
func (s *Server) Set(records ...string) error {
	rrs := make([]dns.RR, 0, len(records))
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil {
			return fmt.Errorf("dnstest: %q: %w", r, err)
		}
		if rr != nil {
			rrs = append(rrs, rr)
		}
	}
	s.mu.Lock()
	s.records = rrs
	s.mu.Unlock()
	return nil
}

// MustSet is Set for records known to be valid; it panics otherwise.
func (s *Server) MustSet(records ...string) {
	if err := s.Set(records...); err != nil {
		panic(err)
	}
}

// SetMode changes how the server answers from now on.
func (s *Server) SetMode(m Mode) { s.mode.Store(int32(m)) }

// TruncateUDP makes answers over UDP truncated (on) or whole (off).
func (s *Server) TruncateUDP(on bool) { s.truncate.Store(on) }

// Asked is how many questions for name (absolute or not) of type qtype
// ("A", "SRV") the server got.
func (s *Server) Asked(name, qtype string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asked[key(name, qtype)]
}

func key(name, qtype string) string {
	return strings.ToLower(dns.Fqdn(name)) + " " + strings.ToUpper(qtype)
}

func (s *Server) serve(w dns.ResponseWriter, q *dns.Msg) {
	if len(q.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(q, dns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	question := q.Question[0]
	s.mu.Lock()
	s.asked[key(question.Name, dns.TypeToString[question.Qtype])]++
	var answer []dns.RR
	exists := false
	for _, rr := range s.records {
		if !strings.EqualFold(rr.Header().Name, question.Name) {
			continue
		}
		exists = true
		if rr.Header().Rrtype == question.Qtype {
			answer = append(answer, dns.Copy(rr))
		}
	}
	s.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	switch Mode(s.mode.Load()) {
	case Silent:
		return
	case ServFail:
		m.Rcode = dns.RcodeServerFailure
	default:
		if !exists {
			m.Rcode = dns.RcodeNameError
		}
		m.Answer = answer
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp && s.truncate.Load() {
		m.Answer, m.Truncated = nil, true
	}
	_ = w.WriteMsg(m)
}
