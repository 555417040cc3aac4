package e2e

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"callgate/sip/siptest"

	"github.com/emiago/sipgo/sip"
)

// malformed is one hostile message for the daemon. build writes it for a
// transport ("UDP" or "TCP") sent from sentBy (IP:port); status is the
// answer it must get (0: any answer or none).
type malformed struct {
	name   string
	build  func(transport, sentBy string) []byte
	status int
	reason string
	// udpOnly / tcpOnly: the message only makes sense on one transport.
	udpOnly, tcpOnly bool
}

// sipMsg joins a start line and headers into a message, {T} and {S} in the
// headers standing for the transport and the sender's address.
func sipMsg(start string, headers []string, body string) func(string, string) []byte {
	return func(tr, sentBy string) []byte {
		h := strings.NewReplacer("{T}", tr, "{S}", sentBy).Replace(strings.Join(headers, "\r\n"))
		return []byte(start + "\r\n" + h + "\r\n\r\n" + body)
	}
}

func raw(b []byte) func(string, string) []byte { return func(string, string) []byte { return b } }

// dialogHeaders are the headers of a request in the call in progress
// (Call-ID callID), minus those named in drop.
func dialogHeaders(method, callID string, drop ...string) []string {
	all := []string{
		"Via: SIP/2.0/{T} {S};branch=z9hG4bK-" + method + strconv.Itoa(rand.IntN(1e9)) + ";rport",
		"Max-Forwards: 70",
		"From: <sip:79161234567@127.0.0.1>;tag=attacker",
		"To: <sip:sales1@127.0.0.1>;tag=guess",
		"Call-ID: " + callID,
		"CSeq: 7 " + method,
		"Contact: <sip:x@{S}>",
		"Content-Length: 0",
	}
	var out []string
next:
	for _, h := range all {
		for _, d := range drop {
			if strings.HasPrefix(h, d+":") {
				continue next
			}
		}
		out = append(out, h)
	}
	return out
}

// newInvite is an INVITE to account sales1 minus drop.
func newInvite(drop ...string) []string {
	h := dialogHeaders("INVITE", "mal-"+strconv.Itoa(rand.IntN(1e9)), drop...)
	for i, x := range h {
		if strings.HasPrefix(x, "To:") {
			h[i] = "To: <sip:sales1@127.0.0.1>"
		}
	}
	return h
}

// malformedTable: messages that once crashed the daemon, RFC 4475 §3.1.2
// and §3.3 messages, and transport-level abuse.
func malformedTable(t *testing.T, vpbxCallID, phoneCallID string, phoneInvite *sip.Request) []malformed {
	const ruri = " sip:sales1@127.0.0.1 SIP/2.0"
	table := []malformed{
		{name: "INVITE without To", build: sipMsg("INVITE"+ruri, newInvite("To"), ""), status: 400, reason: "Missing To"},
		{name: "INVITE without Call-ID", build: sipMsg("INVITE"+ruri, newInvite("Call-ID"), ""), status: 400, reason: "Missing Call-ID"},
		{name: "INVITE without From", build: sipMsg("INVITE"+ruri, newInvite("From"), ""), status: 400, reason: "Missing From"},
		{name: "INVITE without Max-Forwards", build: sipMsg("INVITE"+ruri, newInvite("Max-Forwards"), ""), status: 400, reason: "Missing Max-Forwards"},
		{name: "re-INVITE of the call without To", build: sipMsg("INVITE"+ruri, dialogHeaders("INVITE", vpbxCallID, "To"), ""), status: 400, reason: "Missing To"},
		{name: "BYE without Call-ID", build: sipMsg("BYE"+ruri, dialogHeaders("BYE", "", "Call-ID"), ""), status: 400, reason: "Missing Call-ID"},
		{name: "ACK without Call-ID", build: sipMsg("ACK"+ruri, dialogHeaders("ACK", "", "Call-ID"), "")},
		{name: "INFO without Call-ID", build: sipMsg("INFO"+ruri, dialogHeaders("INFO", "", "Call-ID"), ""), status: 400, reason: "Missing Call-ID"},
		{name: "REFER without Call-ID", build: sipMsg("REFER"+ruri, append(dialogHeaders("REFER", "", "Call-ID"), "Refer-To: <sip:+88212345678@x>"), ""), status: 400, reason: "Missing Call-ID"},
		{name: "BYE of the call without To", build: sipMsg("BYE"+ruri, dialogHeaders("BYE", phoneCallID, "To"), ""), status: 400, reason: "Missing To"},
		{name: "INFO of the call without From", build: sipMsg("INFO"+ruri, dialogHeaders("INFO", vpbxCallID, "From"), ""), status: 400, reason: "Missing From"},
		{name: "OPTIONS without CSeq", build: sipMsg("OPTIONS"+ruri, dialogHeaders("OPTIONS", "mal-opt", "CSeq"), ""), status: 400},
		{name: "REGISTER without Call-ID", build: sipMsg("REGISTER sip:127.0.0.1 SIP/2.0", dialogHeaders("REGISTER", "", "Call-ID"), ""), status: 400, reason: "Missing Call-ID"},
		{name: "SIP/3.0 INVITE", build: sipMsg("INVITE sip:sales1@127.0.0.1 SIP/3.0", newInvite(), ""), status: 505, reason: "Version Not Supported"},
		{name: "SIP/3.0 OPTIONS", build: sipMsg("OPTIONS sip:127.0.0.1 SIP/3.0", dialogHeaders("OPTIONS", "mal-opt3"), ""), status: 505, reason: "Version Not Supported"},
		{name: "CSeq method not the request's", build: sipMsg("BYE"+ruri, append(dialogHeaders("BYE", vpbxCallID, "CSeq"), "CSeq: 7 INVITE"), ""), status: 400, reason: "CSeq Method Does Not Match"},
		{name: "no Via", build: sipMsg("INVITE"+ruri, newInvite("Via"), "")},
		{name: "2xx without Contact for the call's INVITE", build: func(tr, sentBy string) []byte {
			// A 200 to callgate's INVITE to the phone, as a retransmission
			// of its answer would arrive, but without Contact.
			res := sip.NewResponseFromRequest(phoneInvite, sip.StatusOK, "OK", nil)
			res.RemoveHeader("Contact")
			return []byte(res.String())
		}},
		{name: "stray 200 without Contact", build: sipMsg("SIP/2.0 200 OK", dialogHeaders("INVITE", vpbxCallID, "Contact"), "")},
		{name: "negative Content-Length", build: sipMsg("OPTIONS"+ruri, append(dialogHeaders("OPTIONS", "mal-ncl", "Content-Length"), "Content-Length: -5"), "abc")},
		{name: "huge Content-Length", build: sipMsg("INVITE"+ruri, append(newInvite("Content-Length"), "Content-Length: 4294967295"), "v=0\r\n")},
		{name: "Content-Length past the end", build: sipMsg("INVITE"+ruri, append(newInvite("Content-Length"), "Content-Length: 9000"), "v=0\r\n"), udpOnly: true},
		{name: "two Content-Lengths", build: sipMsg("OPTIONS"+ruri, append(dialogHeaders("OPTIONS", "mal-2cl"), "Content-Length: 4"), "")},
		{name: "100 Via headers", build: func(tr, sentBy string) []byte {
			vias := make([]string, 100)
			for i := range vias {
				vias[i] = fmt.Sprintf("Via: SIP/2.0/%s 10.9.%d.%d:5060;branch=z9hG4bK-hop%d", tr, i/250, i%250+1, i)
			}
			return sipMsg("OPTIONS"+ruri, append(dialogHeaders("OPTIONS", "mal-vias"), vias...), "")(tr, sentBy)
		}, status: 200},
		{name: "non-UTF-8 headers", build: sipMsg("INVITE"+ruri, append(newInvite("From"), "From: \"\xff\xfe\xc3\x28\" <sip:\xe2\x82@127.0.0.1>;tag=\xf0\x28\x8c\xbc", "Subject: \xc0\xaf\xed\xa0\x80"), "")},
		{name: "binary garbage", build: func(string, string) []byte {
			r := rand.New(rand.NewPCG(4475, 1))
			b := make([]byte, 1200)
			for i := range b {
				b[i] = byte(r.UintN(256))
			}
			return b
		}},
		{name: "NUL bytes", build: raw(bytes.Repeat([]byte{0}, 512))},
		{name: "HTTP request", build: raw([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))},
		{name: "start line only", build: raw([]byte("INVITE sip:sales1@127.0.0.1 SIP/2.0\r\n\r\n"))},
		{name: "65507-byte datagram", udpOnly: true, build: func(tr, sentBy string) []byte {
			m := sipMsg("OPTIONS"+ruri, dialogHeaders("OPTIONS", "mal-big"), "")(tr, sentBy)
			pad := "X-Pad: " + strings.Repeat("a", 65507-len(m)-len("X-Pad: \r\n")) + "\r\n"
			return bytes.Replace(m, []byte("Max-Forwards: 70\r\n"), []byte("Max-Forwards: 70\r\n"+pad), 1)
		}},
		{name: "64 KiB header block", tcpOnly: true, build: func(tr, sentBy string) []byte {
			m := sipMsg("OPTIONS"+ruri, dialogHeaders("OPTIONS", "mal-64k"), "")(tr, sentBy)
			var pad strings.Builder
			for pad.Len() < 64<<10 {
				fmt.Fprintf(&pad, "X-Pad-%d: %s\r\n", pad.Len(), strings.Repeat("b", 200))
			}
			return bytes.Replace(m, []byte("Max-Forwards: 70\r\n"), []byte("Max-Forwards: 70\r\n"+pad.String()), 1)
		}},
		{name: "unterminated message", tcpOnly: true, build: func(tr, sentBy string) []byte {
			m := sipMsg("INVITE"+ruri, newInvite(), "")(tr, sentBy)
			return m[:len(m)-4] // no blank line: the stream parser waits for the rest
		}},
	}
	for _, dir := range []string{"invalid"} {
		files, err := filepath.Glob(filepath.Join("..", "testdata", "fuzz", "rfc4475", dir, "*.dat"))
		if err != nil || len(files) < 30 {
			t.Fatalf("RFC 4475 messages: %d files, %v", len(files), err)
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			table = append(table, malformed{name: "RFC 4475 " + filepath.Base(f), build: raw(data)})
		}
	}
	return table
}

var statusLine = regexp.MustCompile(`(?m)^SIP/2\.0 (\d{3}) ([^\r\n]*)\r$`)

// finalAnswer is the first final response in data, if any.
func finalAnswer(data []byte) (int, string, bool) {
	for _, m := range statusLine.FindAllSubmatch(data, -1) {
		code, _ := strconv.Atoi(string(m[1]))
		if code >= 200 {
			return code, string(m[2]), true
		}
	}
	return 0, "", false
}

// sendUDP sends msg from a fresh socket on 127.0.0.2 and returns what came
// back within wait.
func sendUDP(t *testing.T, to string, m malformed, wait time.Duration) []byte {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	dst, _ := net.ResolveUDPAddr("udp", to)
	if _, err := pc.WriteTo(m.build("UDP", pc.LocalAddr().String()), dst); err != nil {
		t.Fatalf("%s: %v", m.name, err)
	}
	var got []byte
	buf := make([]byte, 65535)
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		_ = pc.SetReadDeadline(deadline)
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			break
		}
		got = append(got, buf[:n]...)
		if _, _, ok := finalAnswer(got); ok {
			break
		}
	}
	return got
}

// sendTCP sends msg on a new connection from 127.0.0.2 and returns what
// came back within wait.
func sendTCP(t *testing.T, to string, m malformed, wait time.Duration) []byte {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 2 * time.Second}
	conn, err := d.Dial("tcp", to)
	if err != nil {
		t.Fatalf("%s: %v", m.name, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(wait))
	_, _ = conn.Write(m.build("TCP", conn.LocalAddr().String())) // callgate may close the connection half-way
	var got []byte
	buf := make([]byte, 65535)
	for {
		n, err := conn.Read(buf)
		got = append(got, buf[:n]...)
		if _, _, ok := finalAnswer(got); ok || err != nil {
			return got
		}
	}
}

// Hostile messages over UDP and TCP during a call with audio: those that
// must be answered get 400 or 505 naming the problem, none kills or stalls
// the daemon, the call keeps both tones, and a phone still registers.
func TestMalformedMessagesDuringCall(t *testing.T) {
	o := newOffice(t, officeOpts{})
	outside, employee := tonePeers(t)
	ctx := withTimeout(t, 120*time.Second)
	vpbxSide, phoneSide, in := o.inbound(ctx, outside.Addr().String(), employee.Addr().String())
	toRelayA, err := siptest.MediaAddr(vpbxSide.Remote)
	if err != nil {
		t.Fatal(err)
	}
	toRelayB, err := siptest.MediaAddr(in.Request.Body())
	if err != nil {
		t.Fatal(err)
	}
	outside.SendTo(toRelayA)
	employee.SendTo(toRelayB)
	o.d.waitFor("each side hears the other", 5*time.Second, func() bool { return hears(outside, 1000) && hears(employee, 440) })

	table := malformedTable(t, vpbxSide.CallID(), phoneSide.CallID(), in.Request)
	sent := 0
	for _, tr := range []string{"UDP", "TCP"} {
		for _, m := range table {
			if (tr == "UDP" && m.tcpOnly) || (tr == "TCP" && m.udpOnly) {
				continue
			}
			wait := 300 * time.Millisecond
			if m.status != 0 {
				wait = 3 * time.Second
			}
			var got []byte
			if tr == "UDP" {
				got = sendUDP(t, o.d.sipAddr(), m, wait)
			} else {
				got = sendTCP(t, o.d.sipAddr(), m, wait)
			}
			sent++
			code, reason, answered := finalAnswer(got)
			switch {
			case m.status != 0 && (code != m.status || (m.reason != "" && reason != m.reason)):
				t.Errorf("%s over %s: answered %d %q, want %d %q", m.name, tr, code, reason, m.status, m.reason)
			case m.status == 0 && m.reason == "" && strings.HasPrefix(m.name, "ACK") && answered:
				t.Errorf("%s over %s: an ACK was answered %d", m.name, tr, code)
			}
			if err := o.d.cmd.Process.Signal(syscall.Signal(0)); err != nil {
				t.Fatalf("callgate died after %s over %s: %v", m.name, tr, err)
			}
		}
	}
	if sent < 80 {
		t.Fatalf("only %d messages sent", sent)
	}

	select {
	case err := <-o.d.done:
		t.Fatalf("callgate exited: %v", err)
	default:
	}
	res, err := o.d.get("/healthz", false)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("/healthz after the messages: %v %v", res, err)
	}
	res.Body.Close()
	// Fresh audio, not what was heard before the messages.
	outBefore, _ := outside.Received()
	empBefore, _ := employee.Received()
	o.d.waitFor("the call still carries both tones", 5*time.Second, func() bool {
		outNow, _ := outside.Received()
		empNow, _ := employee.Received()
		return outNow > outBefore+25 && empNow > empBefore+25 && hears(outside, 1000) && hears(employee, 440)
	})
	if n := o.d.metric("callgate_calls_active"); n != 1 {
		t.Fatalf("calls_active = %v after the messages, want the call still up", n)
	}
	if n := o.d.metric("callgate_panics_total"); n != 0 {
		t.Fatalf("callgate_panics_total = %v: a message got past the checks", n)
	}
	mustRegister(t, newPhone(t, o.d, siptest.PhoneConfig{User: "103", Password: "Phone103pass"}))

	if err := vpbxSide.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	o.d.waitMetric("callgate_calls_active", 0, 5*time.Second)
}
