package b2bua

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// Requests that used to panic the daemon (To or Call-ID missing, read
// without a check in onInvite and inDialog), and others a handler relies
// on, are answered 400 naming what is missing, or left unanswered where no
// answer may go, and never reach a handler.
func TestMalformedRequestsNeverReachHandlers(t *testing.T) {
	h := newHarness(t, nil)
	cases := []struct {
		name   string
		raw    []byte
		status int
		reason string
	}{
		{"INVITE without To", invite("c1", "To"), 400, "Missing To"},
		{"INVITE without Call-ID", invite("c2", "Call-ID"), 400, "Missing Call-ID"},
		{"INVITE without From", invite("c3", "From"), 400, "Missing From"},
		{"INVITE without Max-Forwards", invite("c4", "Max-Forwards"), 400, "Missing Max-Forwards"},
		{"BYE without Call-ID", inDialogReq("BYE", "c5", "Call-ID"), 400, "Missing Call-ID"},
		{"INFO without Call-ID", inDialogReq("INFO", "c6", "Call-ID"), 400, "Missing Call-ID"},
		{"REFER without Call-ID", inDialogReq("REFER", "c7", "Call-ID"), 400, "Missing Call-ID"},
		{"BYE without To", inDialogReq("BYE", "c8", "To"), 400, "Missing To"},
		{"ACK without Call-ID", inDialogReq("ACK", "c9", "Call-ID"), 0, ""},
		{"ACK without To", inDialogReq("ACK", "c10", "To"), 0, ""},
		{"re-INVITE without Call-ID", []byte(strings.Replace(string(inDialogReq("INVITE", "c11", "Call-ID")), "CSeq: 2 INVITE", "CSeq: 2 INVITE\r\nContact: <sip:x@127.0.0.1>", 1)), 400, "Missing Call-ID"},
		{"SIP/3.0", []byte(strings.Replace(string(invite("c12")), "SIP/2.0\r\n", "SIP/3.0\r\n", 1)), 505, "Version Not Supported"},
		{"CSeq method mismatch", []byte(strings.Replace(string(invite("c13")), "CSeq: 1 INVITE", "CSeq: 1 BYE", 1)), 400, "CSeq Method Does Not Match"},
		{"two Call-IDs", []byte(strings.Replace(string(invite("c14")), "Call-ID: c14", "Call-ID: c14\r\nCall-ID: other", 1)), 400, "Duplicate Call-ID"},
		{"tel Request-URI", []byte(strings.Replace(string(invite("c15")), "INVITE sip:sales1@127.0.0.1:5060", "INVITE tel:+79161234567", 1)), 416, "Unsupported URI Scheme"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, ok := h.serve(tc.raw, "127.0.0.1:5070")
			if !ok {
				t.Fatalf("sipgo would not pass this request on: fix the test message")
			}
			fin := finals(res)
			if tc.status == 0 {
				if len(res) != 0 {
					t.Fatalf("answered %v, want silence", res)
				}
				return
			}
			if len(fin) != 1 || fin[0].StatusCode != tc.status || fin[0].Reason != tc.reason || fin[0].SipVersion != "SIP/2.0" {
				t.Fatalf("answered %v, want SIP/2.0 %d %s", res, tc.status, tc.reason)
			}
		})
	}
	if n := h.b.Panics(); n != 0 {
		t.Fatalf("%d panics recovered: a malformed request reached a handler", n)
	}
	if len(h.events.ended()) != 0 {
		t.Fatalf("a malformed request started a call: %+v", h.events.ended())
	}
}

// A panic in a handler becomes a 500 for that request, a logged error with
// the Call-ID and a count, not the end of the process.
func TestHandlerPanicRecovered(t *testing.T) {
	h := newHarness(t, nil)
	req := parseReq(t, inDialogReq("INFO", "p1"))
	tx := newTx(req)
	defer tx.Terminate()
	h.b.guard(func(*sip.Request, sip.ServerTransaction) { panic("boom") })(req, tx)
	fin := finals(tx.Result())
	if len(fin) != 1 || fin[0].StatusCode != 500 {
		t.Fatalf("answered %v, want 500", tx.Result())
	}
	if h.b.Panics() != 1 {
		t.Fatalf("panics = %d, want 1", h.b.Panics())
	}
	if logs := h.logs.String(); !strings.Contains(logs, "panic recovered") || !strings.Contains(logs, "call_id=p1") || !strings.Contains(logs, "boom") {
		t.Fatalf("log lacks the panic: %s", logs)
	}
}

func parseReq(t testing.TB, raw []byte) *sip.Request {
	t.Helper()
	m, err := sip.ParseMessage(raw)
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, raw)
	}
	req := m.(*sip.Request)
	req.SetSource("127.0.0.1:5070")
	req.SetTransport("UDP")
	return req
}
