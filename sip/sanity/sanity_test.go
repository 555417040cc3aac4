package sanity

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

const okRequest = "OPTIONS sip:callgate@127.0.0.1 SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n" +
	"Max-Forwards: 70\r\n" +
	"From: <sip:101@callgate>;tag=a\r\n" +
	"To: <sip:callgate@callgate>\r\n" +
	"Call-ID: c1\r\n" +
	"CSeq: 1 OPTIONS\r\n" +
	"Content-Length: 0\r\n\r\n"

func parse(t testing.TB, raw string) sip.Message {
	t.Helper()
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, raw)
	}
	return m
}

func TestRequest(t *testing.T) {
	drop := func(name string) string {
		var out []string
		for _, l := range strings.Split(okRequest, "\r\n") {
			if !strings.HasPrefix(l, name+":") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\r\n")
	}
	cases := []struct {
		name, raw string
		status    int
		reason    string
		silent    bool
	}{
		{"sane", okRequest, 0, "", false},
		{"compact forms", strings.NewReplacer("Via:", "v:", "From:", "f:", "To:", "t:", "Call-ID:", "i:", "Content-Length:", "l:").Replace(okRequest), 0, "", false},
		{"no Via", drop("Via"), 400, "Missing Via", true},
		{"no From", drop("From"), 400, "Missing From", false},
		{"no To", drop("To"), 400, "Missing To", false},
		{"no Call-ID", drop("Call-ID"), 400, "Missing Call-ID", false},
		{"no CSeq", drop("CSeq"), 400, "Missing CSeq", false},
		{"no Max-Forwards", drop("Max-Forwards"), 400, "Missing Max-Forwards", false},
		{"two Call-IDs", strings.Replace(okRequest, "Call-ID: c1\r\n", "Call-ID: c1\r\nCall-ID: c2\r\n", 1), 400, "Duplicate Call-ID", false},
		{"two To", strings.Replace(okRequest, "To: <sip:callgate@callgate>\r\n", "To: <sip:a@b>\r\nTo: <sip:c@d>\r\n", 1), 400, "Duplicate To", false},
		{"two Max-Forwards", strings.Replace(okRequest, "Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nMax-Forwards: 69\r\n", 1), 400, "Duplicate Max-Forwards", false},
		{"two Content-Lengths", strings.Replace(okRequest, "Content-Length: 0\r\n", "Content-Length: 0\r\nContent-Length: 0\r\n", 1), 400, "Duplicate Content-Length", false},
		{"CSeq of another method", strings.Replace(okRequest, "CSeq: 1 OPTIONS", "CSeq: 1 INVITE", 1), 400, "CSeq Method Does Not Match", false},
		{"SIP/3.0", strings.Replace(okRequest, "SIP/2.0\r\n", "SIP/3.0\r\n", 1), 505, "Version Not Supported", false},
		{"SIP/3.0 without Via", strings.Replace(drop("Via"), "SIP/2.0\r\n", "SIP/3.0\r\n", 1), 505, "Version Not Supported", true},
		{"tel URI", strings.Replace(okRequest, "sip:callgate@127.0.0.1", "tel:+79161234567", 1), 416, "Unsupported URI Scheme", false},
		{"ACK without Call-ID", strings.Replace(strings.Replace(drop("Call-ID"), "OPTIONS sip", "ACK sip", 1), "1 OPTIONS", "1 ACK", 1), 400, "Missing Call-ID", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := parse(t, tc.raw).(*sip.Request)
			p := Request(req)
			if tc.status == 0 {
				if p != nil {
					t.Fatalf("sane request refused: %v", p)
				}
				return
			}
			if p == nil || p.Status != tc.status || p.Reason != tc.reason || p.Silent != tc.silent {
				t.Fatalf("got %+v, want %d %q silent=%v", p, tc.status, tc.reason, tc.silent)
			}
			res := Reply(req, p)
			if tc.silent != (res == nil) {
				t.Fatalf("reply %v with silent=%v", res, tc.silent)
			}
			if res != nil && (res.SipVersion != "SIP/2.0" || res.StatusCode != tc.status || res.Reason != tc.reason) {
				t.Fatalf("reply %s", res.StartLine())
			}
		})
	}
}

// A body that does not match Content-Length after parsing (something
// rewrote the message) is refused.
func TestRequestContentLengthMismatch(t *testing.T) {
	req := parse(t, okRequest).(*sip.Request)
	req.SetBody([]byte("abc"))
	req.RemoveHeader("Content-Length")
	cl := sip.ContentLengthHeader(10)
	req.AppendHeader(&cl)
	if p := Request(req); p == nil || p.Reason != "Bad Content-Length" {
		t.Fatalf("got %v", p)
	}
}

func TestResponse(t *testing.T) {
	ok200 := "SIP/2.0 200 OK\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1\r\n" +
		"From: <sip:callgate@callgate>;tag=a\r\n" +
		"To: <sip:101@callgate>;tag=b\r\n" +
		"Call-ID: c1\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:101@127.0.0.1:5070>\r\n" +
		"Content-Length: 0\r\n\r\n"
	cases := []struct {
		name, raw, reason string
	}{
		{"sane 2xx", ok200, ""},
		{"2xx without Contact", strings.Replace(ok200, "Contact: <sip:101@127.0.0.1:5070>\r\n", "", 1), "Missing Contact"},
		{"2xx without To tag", strings.Replace(ok200, ";tag=b", "", 1), "Missing To tag"},
		{"180 without Contact", strings.Replace(strings.Replace(ok200, "200 OK", "180 Ringing", 1), "Contact: <sip:101@127.0.0.1:5070>\r\n", "", 1), ""},
		{"200 to BYE without Contact", strings.Replace(strings.Replace(ok200, "1 INVITE", "2 BYE", 1), "Contact: <sip:101@127.0.0.1:5070>\r\n", "", 1), ""},
		{"no Call-ID", strings.Replace(ok200, "Call-ID: c1\r\n", "", 1), "Missing Call-ID"},
		{"no From", strings.Replace(ok200, "From: <sip:callgate@callgate>;tag=a\r\n", "", 1), "Missing From"},
		{"SIP/3.0", strings.Replace(ok200, "SIP/2.0 200", "SIP/3.0 200", 1), "Version Not Supported"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := Response(parse(t, tc.raw).(*sip.Response))
			if tc.reason == "" {
				if p != nil {
					t.Fatalf("sane response refused: %v", p)
				}
				return
			}
			if p == nil || p.Reason != tc.reason || !p.Silent {
				t.Fatalf("got %+v, want %q (silent)", p, tc.reason)
			}
		})
	}
}

// FuzzCheck runs the checks on whatever sipgo parses: they must never
// panic, and a request they pass must carry everything handlers read.
func FuzzCheck(f *testing.F) {
	f.Add([]byte(okRequest))
	f.Add([]byte(strings.Replace(okRequest, "Call-ID: c1\r\n", "", 1)))
	f.Add([]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := sip.ParseMessage(data)
		if err != nil {
			return
		}
		_ = CallID(m)
		switch m := m.(type) {
		case *sip.Request:
			p := Request(m)
			if p == nil {
				if m.Via() == nil || m.From() == nil || m.To() == nil || m.CallID() == nil || m.CSeq() == nil || m.MaxForwards() == nil {
					t.Fatalf("passed without a mandatory header:\n%q", data)
				}
				return
			}
			if res := Reply(m, p); res != nil {
				_ = res.String()
			}
		case *sip.Response:
			if Response(m) == nil && (m.Via() == nil || m.CallID() == nil || m.CSeq() == nil || m.From() == nil || m.To() == nil) {
				t.Fatalf("response passed without a mandatory header:\n%q", data)
			}
		}
	})
}

func TestDatagram(t *testing.T) {
	for _, tc := range []struct {
		data string
		ok   bool
	}{
		{okRequest, true},
		{strings.Replace(okRequest, "SIP/2.0\r\n", "SIP/3.0\r\n", 1), true},
		{"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", true},
		{"SIP/2.0 100\r\n\r\n", true},
		{"\r\n\r\n", true},
		{"\r\n", true},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"\x00\x01\x02\xff garbage", false},
		{"INVITE sip:x SIP/2.0", false}, // no line end
		{"INV\xffITE sip:x SIP/2.0\r\n\r\n", false},
		{"SIP/2.0 2x0 OK\r\n\r\n", false},
		{" INVITE sip:x SIP/2.0\r\n\r\n", false},
		{strings.Repeat("A", 2000) + " sip:x SIP/2.0\r\n\r\n", false},
	} {
		if got := Datagram([]byte(tc.data)); got != tc.ok {
			t.Errorf("Datagram(%q) = %v, want %v", tc.data, got, tc.ok)
		}
	}
	// No RFC 4475 message that sipgo parses is dropped before the checks
	// that answer it.
	for _, name := range []string{"valid", "invalid"} {
		files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "fuzz", "rfc4475", name, "*.dat"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sip.ParseMessage(b); !Datagram(b) && err == nil {
				t.Errorf("%s dropped as garbage", f)
			}
		}
	}
}

func FuzzDatagram(f *testing.F) {
	f.Add([]byte(okRequest))
	f.Add([]byte("SIP/2.0 200 OK\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if Datagram(data) || len(bytes.Trim(data, "\r\n")) == 0 {
			return
		}
		// A request Datagram drops is one sipgo refuses or Request would.
		if m, err := sip.ParseMessage(data); err == nil {
			if req, ok := m.(*sip.Request); ok && Request(req) == nil {
				t.Fatalf("dropped a sane request:\n%q", data)
			}
		}
	})
}

// BenchmarkRequest is the cost the check adds to every request, REGISTER
// bursts included.
func BenchmarkRequest(b *testing.B) {
	req := parse(b, okRequest).(*sip.Request)
	b.ReportAllocs()
	for b.Loop() {
		if Request(req) != nil {
			b.Fatal("refused")
		}
	}
}

func BenchmarkDatagram(b *testing.B) {
	data := []byte(okRequest)
	b.ReportAllocs()
	for b.Loop() {
		if !Datagram(data) {
			b.Fatal("dropped")
		}
	}
}
