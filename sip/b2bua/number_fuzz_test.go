package b2bua

import (
	"testing"
	"unicode/utf8"

	"callgate/sip/siptest"

	"github.com/emiago/sipgo/sip"
)

// FuzzOutsideNumber reads the caller's number out of any request the VPBX
// or a carrier could send: it must not panic, and a number it finds in a
// header is no longer than the header it came from.
func FuzzOutsideNumber(f *testing.F) {
	siptest.AddMessages(f)
	f.Add([]byte("INVITE sip:1@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: \"+7 (916) 123-45-67\" <sip:op17@carrier>;tag=1\r\n" +
		"P-Asserted-Identity: <tel:+7-495-765-43-21>\r\nRemote-Party-ID: <sip:84957654321@c>;party=calling\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("INVITE sip:1@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nP-Asserted-Identity: <\r\nRemote-Party-ID: >\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := sip.NewParser().ParseSIP(data)
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok {
			return
		}
		n := outsideNumber(req)
		if len(n) > len(data) {
			t.Fatalf("number %q longer than the message", n)
		}
		if utf8.ValidString(string(data)) && !utf8.ValidString(n) {
			t.Fatalf("number %q is not valid UTF-8 from a valid message", n)
		}
	})
}
