package e2e

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"callgate/sip/siptest"

	"github.com/emiago/sipgo"
)

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

func TestUnauthenticatedInviteNeverReachesVPBX(t *testing.T) {
	o := newOffice(t, officeOpts{})
	intruder := newPhone(t, o.d, siptest.PhoneConfig{User: "101", Password: "wrong-password"})
	ctx := withTimeout(t, 10*time.Second)
	_, err := intruder.Dial(ctx, "79161234567", siptest.SDP("127.0.0.1:30902"))
	var de *sipgo.ErrDialogResponse
	if !errors.As(err, &de) || de.Res.StatusCode != 403 {
		t.Fatalf("dial with a wrong password: %v", err)
	}
	select {
	case <-o.vpbx.Calls:
		t.Fatal("an unauthenticated call reached the VPBX")
	case <-time.After(300 * time.Millisecond):
	}
}
