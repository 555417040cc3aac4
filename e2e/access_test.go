package e2e

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"callgate/sip/siptest"
)

func TestWrongPasswordIsCountedAndBanned(t *testing.T) {
	d := startDaemon(t, newDaemonConfig(t, "")) // max_failures = 3
	bad := newPhone(t, d, siptest.PhoneConfig{User: "101", Password: "Phone101pass"})
	for i := 1; i <= 3; i++ {
		res, err := bad.RegisterWithPassword(withTimeout(t, 5*time.Second), "guess"+itoa(i))
		if err != nil || res.StatusCode != 403 {
			t.Fatalf("attempt %d: %v %v", i, res, err)
		}
	}
	d.waitMetric("callgate_sip_auth_failures_total", 3, 5*time.Second)
	d.waitMetric("callgate_sip_banned_sources", 2, 5*time.Second) // the IP:port, and the user name 101 at that IP
	// The banned source gets no answer at all, even with the right password.
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if res, err := bad.Register(ctx, 300); err == nil {
		t.Fatalf("banned source answered: %d", res.StatusCode)
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a timeout, got %v", err)
	}
	// Another phone on the same address (behind the same NAT) is not banned.
	good := newPhone(t, d, siptest.PhoneConfig{User: "103", Password: "Phone103pass"})
	mustRegister(t, good)
	if d.metric("callgate_sip_auth_failures_total") != 3 {
		t.Fatal("failure count changed by a good phone")
	}
}

func TestPrivateContactReachedAtSourceAddress(t *testing.T) {
	d := startDaemon(t, newDaemonConfig(t, ""))
	// The phone believes it is 10.99.99.99 (unreachable from here); only its
	// real source address works.
	p := newPhone(t, d, siptest.PhoneConfig{User: "101", Password: "Phone101pass", ContactHost: "10.99.99.99:5060"})
	mustRegister(t, p)
	req := waitOptions(t, p, 5*time.Second)
	if req.Recipient.Host != "10.99.99.99" {
		t.Fatalf("OPTIONS Request-URI %s, want the phone's own Contact", req.Recipient.String())
	}
	if !strings.HasPrefix(req.Source(), "127.0.0.1:") {
		t.Fatalf("OPTIONS came from %s", req.Source())
	}
}

func TestRegistrationsSurviveKill9(t *testing.T) {
	cfg := newDaemonConfig(t, "")
	d := startDaemon(t, cfg)
	p := newPhone(t, d, siptest.PhoneConfig{User: "101", Password: "Phone101pass", ContactHost: "10.99.99.99:5060"})
	p2 := newPhone(t, d, siptest.PhoneConfig{User: "103", Password: "Phone103pass", Transport: "udp"})
	mustRegister(t, p)
	mustRegister(t, p2)
	d.waitMetric("callgate_location_stored_bindings", 2, 5*time.Second)
	d.kill()
	// Drain what the first instance sent.
	for _, ph := range []*siptest.Phone{p, p2} {
		for len(ph.Requests) > 0 {
			<-ph.Requests
		}
	}
	d2 := startDaemon(t, cfg)
	d2.waitMetric("callgate_registered_contacts", 2, 5*time.Second)
	// The restarted daemon reaches the phone without a new REGISTER.
	waitOptions(t, p, 5*time.Second)
	waitOptions(t, p2, 5*time.Second)
	if d2.metric("callgate_sip_register_total") != 0 {
		t.Fatal("phones registered again")
	}
	d2.stop()
}

// sendOptionsFrom sends a bare OPTIONS from a given local address and
// reports whether any answer came back within the timeout.
func sendOptionsFrom(t *testing.T, local, to string) bool {
	t.Helper()
	c, err := net.ListenPacket("udp", local)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	laddr := c.LocalAddr().String()
	msg := "OPTIONS sip:" + to + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + laddr + ";branch=z9hG4bK" + itoa(int(time.Now().UnixNano()%1e9)) + "\r\n" +
		"From: <sip:probe@" + laddr + ">;tag=p1\r\nTo: <sip:" + to + ">\r\n" +
		"Call-ID: probe-" + laddr + "\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	dst, _ := net.ResolveUDPAddr("udp", to)
	if _, err := c.WriteTo([]byte(msg), dst); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
	buf := make([]byte, 4096)
	n, _, err := c.ReadFrom(buf)
	return err == nil && strings.HasPrefix(string(buf[:n]), "SIP/2.0 200")
}

func TestOnlyKnownNetworksGetAnswers(t *testing.T) {
	d := startDaemon(t, newDaemonConfig(t, `[upstream]
trusted_sources = ["127.0.0.5/32"]
`))
	if !sendOptionsFrom(t, "127.0.0.1:0", d.sipAddr()) {
		t.Fatal("OPTIONS from the phones' network not answered")
	}
	if !sendOptionsFrom(t, "127.0.0.5:0", d.sipAddr()) {
		t.Fatal("OPTIONS from the VPBX's trusted source not answered")
	}
	if sendOptionsFrom(t, "127.0.0.9:0", d.sipAddr()) {
		t.Fatal("OPTIONS from an unknown network answered")
	}
	// REGISTER from outside allow_networks is refused.
	p := newPhone(t, d, siptest.PhoneConfig{User: "101", Password: "Phone101pass", Listen: "127.0.0.9:0"})
	res, err := p.Register(withTimeout(t, 5*time.Second), 300)
	if err != nil || res.StatusCode != 403 {
		t.Fatalf("register from outside: %v %v", res, err)
	}
}
