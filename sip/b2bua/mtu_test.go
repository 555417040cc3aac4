package b2bua

import (
	"bufio"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"

	"callgate/sip/location"

	"github.com/emiago/sipgo/sip"
)

// bigSDP makes the INVITE callgate sends the phone larger than 1300 bytes
// (the session name survives the SDP rewrite).
var bigSDP = strings.Replace(testSDP, "s=-", "s="+strings.Repeat("x", 1400), 1)

func bigInvite(callID string) []byte {
	return []byte(strings.Replace(strings.Replace(string(invite(callID)), testSDP, bigSDP, 1),
		"Content-Length: "+itoa(len(testSDP)), "Content-Length: "+itoa(len(bigSDP)), 1))
}

// An INVITE over 1300 bytes to a phone registered over UDP goes over TCP
// when the phone takes TCP connections on its address (RFC 3261 §18.1.1).
func TestLargeInviteGoesOverTCP(t *testing.T) {
	h := newHarness(t, newClient(t))
	phone := newRawPhone(t)
	ln, err := net.Listen("tcp", phone.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	h.loc.bindings["101"] = []location.Binding{phone.binding("101")}

	done := h.served(bigInvite("big1"))
	conns := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	var inv *sip.Request
	var conn net.Conn
	for inv == nil {
		conn = wait(t, conns, "a TCP connection from callgate")
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		inv = readTCPRequest(conn) // the first connection may be the probe, which sends nothing
	}
	if inv.Method != sip.INVITE || !strings.Contains(inv.Via().Transport, "TCP") || len(inv.String()) <= udpMax {
		t.Fatalf("got over TCP: %s (%d bytes)", inv.StartLine(), len(inv.String()))
	}
	busy := sip.NewResponseFromRequest(inv, sip.StatusBusyHere, "Busy Here", nil)
	if _, err := conn.Write([]byte(busy.String())); err != nil {
		t.Fatal(err)
	}
	if fin := finals(wait(t, done, "the call to end")); len(fin) != 1 || fin[0].StatusCode != sip.StatusBusyHere {
		t.Fatalf("VPBX got %v, want the phone's 486", fin)
	}
	select {
	case req := <-phone.reqs:
		t.Fatalf("the phone also got %s over UDP", req.StartLine())
	default:
	}
}

// A phone without TCP still gets the large INVITE, over UDP (fragmented),
// rather than none at all.
func TestLargeInviteStaysOnUDPWithoutTCP(t *testing.T) {
	h := newHarness(t, newClient(t))
	phone := newRawPhone(t)
	h.loc.bindings["101"] = []location.Binding{phone.binding("101")}

	done := h.served(bigInvite("big2"))
	inv := phone.next(sip.INVITE)
	if len(inv.String()) <= udpMax {
		t.Fatalf("INVITE is only %d bytes", len(inv.String()))
	}
	phone.answer(inv, sip.NewResponseFromRequest(inv, sip.StatusBusyHere, "Busy Here", nil))
	if fin := finals(wait(t, done, "the call to end")); len(fin) != 1 || fin[0].StatusCode != sip.StatusBusyHere {
		t.Fatalf("VPBX got %v, want the phone's 486", fin)
	}
}

// readTCPRequest reads one SIP request from a stream, nil on EOF.
func readTCPRequest(conn net.Conn) *sip.Request {
	r := textproto.NewReader(bufio.NewReader(conn))
	var b strings.Builder
	length := 0
	for {
		line, err := r.ReadLine()
		if err != nil {
			return nil
		}
		b.WriteString(line + "\r\n")
		if line == "" {
			break
		}
		if name, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "Content-Length") {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(r.R, body); err != nil {
		return nil
	}
	m, err := sip.ParseMessage(append([]byte(b.String()), body...))
	if err != nil {
		return nil
	}
	req, _ := m.(*sip.Request)
	return req
}
