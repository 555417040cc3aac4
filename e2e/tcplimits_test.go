package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"callgate/sip/siptest"

	"github.com/emiago/sipgo/sip"
	icdigest "github.com/icholy/digest"
)

// TestSIPTCPConnectionLimits floods callgate with idle SIP TCP connections
// from one address: the per-IP cap holds (connections over it are closed
// at once), idle ones are closed after sip.tcp_idle_timeout, while phones
// registered over TCP keep their connections and registration keeps working.
func TestSIPTCPConnectionLimits(t *testing.T) {
	const (
		flood    = 2000
		maxPerIP = 50
		idle     = 2 * time.Second
		floodIP  = "127.0.0.2"
	)
	raiseNoFile(t, flood+1024)
	cfg := newDaemonConfig(t, "")
	cfg.SIPExtra = fmt.Sprintf("tcp_max_per_ip = %d\ntcp_idle_timeout = %q", maxPerIP, idle.String())
	d := startDaemon(t, cfg)

	// A phone registered over TCP (it answers callgate's OPTIONS every
	// second), and a silent one that registers and then never sends a byte:
	// only its registration can keep its connection open.
	phone := newPhone(t, d, siptest.PhoneConfig{User: "101", Password: "Phone101pass", Transport: "tcp"})
	mustRegister(t, phone)
	silent := dialRawSIP(t, d, "127.0.0.1")
	if code := silent.register(t, "102", "Phone101pass", 300); code != 200 {
		t.Fatalf("silent phone: register answered %d", code)
	}
	silentSpoke := time.Now()
	d.waitMetric("callgate_sip_tcp_connections", 2, 5*time.Second)

	// Sample the open connections while the flood lasts.
	stopSampling := make(chan struct{})
	maxOpen := make(chan float64, 1)
	go func() {
		hi := 0.0
		for {
			hi = max(hi, d.metric("callgate_sip_tcp_connections"))
			select {
			case <-stopSampling:
				maxOpen <- hi
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	type result struct {
		lived  time.Duration // from the dial to the server's close
		closed bool
	}
	results := make([]result, flood)
	var wg sync.WaitGroup
	dialer := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(floodIP)}}
	floodDeadline := time.Now().Add(60 * time.Second)
	for i := 0; i < flood; i++ {
		if time.Now().After(floodDeadline) {
			t.Fatalf("the flood took too long: %d connections in 60 s", i)
		}
		began := time.Now()
		c, err := dialer.Dial("tcp", d.sipAddr())
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		wg.Add(1)
		go func(i int, c net.Conn) {
			defer wg.Done()
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, err := io.Copy(io.Discard, c)
			if err == nil || errors.Is(err, syscall.ECONNRESET) {
				results[i] = result{lived: time.Since(began), closed: true}
			}
		}(i, c)
	}
	wg.Wait() // every reader ends by its deadline
	close(stopSampling)
	hi := <-maxOpen

	refusedAtOnce, closedIdle := 0, 0
	for i, r := range results {
		switch {
		case !r.closed:
			t.Fatalf("flood connection %d was never closed by callgate", i)
		case r.lived < idle:
			refusedAtOnce++
		default:
			closedIdle++
		}
	}
	t.Logf("flood: %d closed at once, %d closed idle; at most %v connections open", refusedAtOnce, closedIdle, hi)
	if hi > maxPerIP+2 {
		t.Errorf("%v SIP TCP connections were open at once; the cap is %d per IP plus 2 phones", hi, maxPerIP)
	}
	if closedIdle < maxPerIP {
		t.Errorf("only %d flood connections were held until idle; the cap of %d was not even filled", closedIdle, maxPerIP)
	}
	if refused := d.metric("callgate_sip_tcp_refused_total"); refused != float64(refusedAtOnce) || refusedAtOnce == 0 {
		t.Errorf("refused_total = %v, connections closed before the idle timeout = %d of %d", refused, refusedAtOnce, flood)
	}
	if n := d.metric("callgate_sip_tcp_idle_closed_total"); n != float64(closedIdle) {
		t.Errorf("idle_closed_total = %v, want %d (the phones' connections must not be among them)", n, closedIdle)
	}

	// Both phones kept their connections past the timeout, the silent one
	// through at least two sweeps, and callgate's requests still reach them
	// over those connections (a new connection to a phone's source port
	// would be refused: nothing listens there).
	if wait := 3*idle - time.Since(silentSpoke); wait > 0 {
		time.Sleep(wait)
	}
	d.waitMetric("callgate_sip_tcp_connections", 2, 5*time.Second)
	drain(phone.Requests)
	waitOptions(t, phone, 5*time.Second)
	if !silent.waitRequest(t, "OPTIONS", 5*time.Second) {
		t.Fatal("the registered silent phone lost its connection")
	}

	// Registration keeps working, also for the flooding address once its
	// connections are gone.
	late := newPhone(t, d, siptest.PhoneConfig{User: "103", Password: "Phone103pass", Transport: "tcp"})
	mustRegister(t, late)
	again := dialRawSIP(t, d, floodIP)
	if code := again.register(t, "103", "", 300); code != 401 {
		t.Fatalf("a REGISTER from the flooding address after the flood got %d, want a 401 challenge", code)
	}

	// Without its registration the silent phone's connection is idle like
	// any other and goes.
	if code := silent.register(t, "102", "Phone101pass", 0); code != 200 {
		t.Fatalf("silent phone: unregister answered %d", code)
	}
	select {
	case <-silent.gone:
	case <-time.After(idle + 5*time.Second):
		t.Fatal("the unregistered silent phone's idle connection stayed open")
	}
	// RFC 5626 style: a phone whose connection is gone registers on a new
	// one, and callgate reaches it there.
	back := dialRawSIP(t, d, "127.0.0.1")
	if code := back.register(t, "102", "Phone101pass", 300); code != 200 {
		t.Fatalf("re-register on a new connection answered %d", code)
	}
	if !back.waitRequest(t, "OPTIONS", 5*time.Second) {
		t.Fatal("no OPTIONS over the new connection")
	}
	if !strings.Contains(d.log.String(), "connection refused: too many from one address") {
		t.Error("refusals were not logged")
	}
	if strings.Contains(d.log.String(), "Read error") {
		t.Error("sipgo logged a read error for a connection callgate closed")
	}
}

// TestSIPTCPCallKeepsConnection: a phone talking over TCP keeps its quiet
// connection while the call lasts even without a registration (nothing
// else would keep it: callgate sends no OPTIONS to an unregistered phone
// and RTP goes over UDP); once the call ends the connection goes.
func TestSIPTCPCallKeepsConnection(t *testing.T) {
	const idle = 2 * time.Second
	vpbx, err := siptest.NewVPBX(siptest.VPBXConfig{Domain: "vpbx.test", Accounts: map[string]string{"sales1": "Secret123"}, Grant: 300})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vpbx.Close)
	cfg := newDaemonConfig(t, "")
	cfg.SIPExtra = fmt.Sprintf("tcp_idle_timeout = %q", idle.String())
	port := portBlock(t, 100)
	cfg.Extra = upstreamSection(vpbx.Addr()) + fmt.Sprintf(`[media]
rtp_ports = "%d-%d"
bind = "127.0.0.1"
timeout = "60s"
[recording]
enabled = false
`, port, port+99)
	d := startDaemon(t, cfg)
	d.waitMetric(`callgate_upstream_registered{account="sales1"}`, 1, 10*time.Second)
	phone := newPhone(t, d, siptest.PhoneConfig{User: "101", Password: "Phone101pass", Transport: "tcp"})
	mustRegister(t, phone)

	ctx := withTimeout(t, 30*time.Second)
	answered := make(chan *siptest.Call, 1)
	go func() {
		if c, err := vpbx.Invite(ctx, "sales1", "79161234567", siptest.SDP("127.0.0.1:9")); err == nil {
			answered <- c
		}
	}()
	phoneSide, err := nextCall(t, phone).Answer(ctx, siptest.SDP("127.0.0.1:9"))
	if err != nil {
		t.Fatal(err)
	}
	var outside *siptest.Call
	select {
	case outside = <-answered:
	case <-ctx.Done():
		t.Fatal("the VPBX side was not answered")
	}
	if res, err := phone.UnregisterAll(ctx); err != nil || res.StatusCode != 200 {
		t.Fatalf("unregister: %v %v", res, err)
	}
	time.Sleep(3 * idle) // several sweeps with the phone silent
	if n := d.metric("callgate_sip_tcp_idle_closed_total"); n != 0 || d.metric("callgate_sip_tcp_connections") != 1 {
		t.Fatalf("the connection of a phone in a call was closed (idle closed %v)", n)
	}
	if err := outside.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-phoneSide.Done():
	case <-ctx.Done():
		t.Fatal("the phone got no BYE")
	}
	d.waitMetric("callgate_sip_tcp_idle_closed_total", 1, idle+5*time.Second)
	d.waitMetric("callgate_sip_tcp_connections", 0, time.Second)
}

// raiseNoFile makes sure the test may hold need open files.
func raiseNoFile(t *testing.T, need uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= need {
		return
	}
	was := lim.Cur
	lim.Cur, lim.Max = need, max(lim.Max, need) // a higher hard limit needs root
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("the flood needs %d open files, the limit is %d: %v", need, was, err)
	}
}

func drain(ch chan *sip.Request) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// rawSIP is a SIP client over one TCP connection that answers nothing.
type rawSIP struct {
	c         net.Conn
	server    string
	callID    string
	cseq      int
	responses chan rawMessage
	requests  chan rawMessage
	gone      chan struct{} // closed when callgate closes the connection
}

type rawMessage struct {
	start  string
	header textproto.MIMEHeader
}

func dialRawSIP(t *testing.T, d *daemon, from string) *rawSIP {
	t.Helper()
	dialer := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := dialer.Dial("tcp", d.sipAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &rawSIP{c: c, server: d.sipAddr(), callID: sip.GenerateTagN(16), responses: make(chan rawMessage, 16),
		requests: make(chan rawMessage, 64), gone: make(chan struct{})}
	go s.read()
	return s
}

func (s *rawSIP) read() {
	defer close(s.gone)
	r := textproto.NewReader(bufio.NewReader(s.c))
	for {
		start, err := r.ReadLine()
		if err != nil {
			return
		}
		if start == "" {
			continue // a CRLF keepalive
		}
		h, err := r.ReadMIMEHeader()
		if err != nil {
			return
		}
		if n, _ := strconv.Atoi(h.Get("Content-Length")); n > 0 {
			if _, err := io.CopyN(io.Discard, r.R, int64(n)); err != nil {
				return
			}
		}
		m := rawMessage{start: start, header: h}
		if strings.HasPrefix(start, "SIP/2.0 ") {
			s.responses <- m
			continue
		}
		select {
		case s.requests <- m:
		default:
		}
	}
}

// register sends a REGISTER for user, answering one digest challenge when
// password is set, and returns the final status.
func (s *rawSIP) register(t *testing.T, user, password string, expires int) int {
	t.Helper()
	uri := "sip:" + s.server
	local := s.c.LocalAddr().String()
	auth := ""
	for {
		s.cseq++
		msg := fmt.Sprintf("REGISTER %s SIP/2.0\r\nVia: SIP/2.0/TCP %s;branch=z9hG4bK%s\r\nMax-Forwards: 70\r\n"+
			"From: <sip:%s@127.0.0.1>;tag=%s\r\nTo: <sip:%s@127.0.0.1>\r\nCall-ID: %s\r\nCSeq: %d REGISTER\r\n"+
			"Contact: <sip:%s@%s;transport=tcp>\r\nExpires: %d\r\n%sContent-Length: 0\r\n\r\n",
			uri, local, sip.GenerateTagN(12), user, sip.GenerateTagN(8), user, s.callID, s.cseq, user, local, expires, auth)
		if _, err := s.c.Write([]byte(msg)); err != nil {
			t.Fatalf("register %s: %v", user, err)
		}
		var res rawMessage
		select {
		case res = <-s.responses:
		case <-s.gone:
			t.Fatalf("register %s: connection closed", user)
		case <-time.After(5 * time.Second):
			t.Fatalf("register %s: no answer", user)
		}
		code, _ := strconv.Atoi(strings.Fields(res.start)[1])
		if code != 401 || password == "" || auth != "" {
			return code
		}
		ch, err := icdigest.ParseChallenge(res.header.Get("WWW-Authenticate"))
		if err != nil {
			t.Fatalf("register %s: %v", user, err)
		}
		cred, err := icdigest.Digest(ch, icdigest.Options{Method: "REGISTER", URI: uri, Username: user, Password: password})
		if err != nil {
			t.Fatalf("register %s: %v", user, err)
		}
		auth = "Authorization: " + cred.String() + "\r\n"
	}
}

// waitRequest waits for a request of method from callgate, left unanswered.
func (s *rawSIP) waitRequest(t *testing.T, method string, timeout time.Duration) bool {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-s.requests:
			if strings.HasPrefix(m.start, method+" ") {
				return true
			}
		case <-s.gone:
			return false
		case <-deadline:
			return false
		}
	}
}
