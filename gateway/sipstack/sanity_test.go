package sipstack

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	sipgotest "github.com/emiago/sipgo/siptest"
)

func TestGuardFilter(t *testing.T) {
	s := &Stack{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	calls := 0
	f := s.guardFilter(func(info sip.TransportReadProps, data []byte) ([]byte, error) {
		calls++
		if string(data[:5]) == "PANIC" {
			panic("in the filter")
		}
		return data, nil
	})
	udp := sip.TransportReadProps{Transport: "udp", RemoteAddr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 5060}}
	sipMsg := []byte("OPTIONS sip:x SIP/2.0\r\n\r\n")
	if out, _ := f(udp, sipMsg); string(out) != string(sipMsg) || calls != 1 {
		t.Fatalf("a SIP datagram did not pass: %q", out)
	}
	if out, _ := f(udp, []byte("\x16\x03\x01 garbage")); out != nil || calls != 1 {
		t.Fatalf("garbage passed: %q", out)
	}
	if out, _ := f(sip.TransportReadProps{Transport: "tcp"}, []byte("a chunk")); string(out) != "a chunk" {
		t.Fatal("a TCP chunk was checked as a datagram")
	}
	if out, err := f(udp, []byte("PANIC sip:x SIP/2.0\r\n\r\n")); out != nil || err != nil || s.panics.Load() != 1 {
		t.Fatalf("panic: out %q err %v panics %d", out, err, s.panics.Load())
	}
}

func TestGuardHandler(t *testing.T) {
	s := &Stack{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	raw := "INFO sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-1\r\nMax-Forwards: 70\r\n" +
		"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: g1\r\nCSeq: 1 INFO\r\nContent-Length: 0\r\n\r\n"
	serve := func(raw string, h func(*sip.Request, sip.ServerTransaction)) []*sip.Response {
		m, err := sip.ParseMessage([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		req := m.(*sip.Request)
		req.SetSource("127.0.0.2:5060")
		tx := sipgotest.NewServerTxRecorder(req)
		defer tx.Terminate()
		s.guardHandler(h)(req, tx)
		return tx.Result()
	}
	reached := false
	res := serve(raw, func(*sip.Request, sip.ServerTransaction) { reached = true })
	if !reached || len(res) != 0 {
		t.Fatalf("sane request: reached %v, answered %v", reached, res)
	}
	reached = false
	res = serve(strings.Replace(raw, "Call-ID: g1\r\n", "", 1), func(*sip.Request, sip.ServerTransaction) { reached = true })
	if reached || len(res) != 1 || res[0].StatusCode != 400 || res[0].Reason != "Missing Call-ID" {
		t.Fatalf("request without Call-ID: reached %v, answered %v", reached, res)
	}
	res = serve(raw, func(*sip.Request, sip.ServerTransaction) { panic("boom") })
	if len(res) != 1 || res[0].StatusCode != 500 || s.panics.Load() != 1 {
		t.Fatalf("panic: answered %v, panics %d", res, s.panics.Load())
	}
}
