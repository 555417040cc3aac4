package sipstack

import (
	"net/netip"
	"testing"

	"callgate/sip/sipnet"

	"github.com/emiago/sipgo/sip"
)

// A reload's sip.allow_networks decide the next request: a phone's
// network taken out is dropped, one put in is admitted.
func TestSetPhonesAdmitsByTheNewNetworks(t *testing.T) {
	s := newStack(t, sipnet.UDP)
	s.phones = sipnet.Networks{netip.MustParsePrefix("10.0.0.0/8")}
	var reached []string
	h := s.Admit(false, func(req *sip.Request, _ sip.ServerTransaction) { reached = append(reached, req.Source()) })
	send := func(src string) {
		msg, err := sip.NewParser().ParseSIP([]byte("OPTIONS sip:callgate SIP/2.0\r\nVia: SIP/2.0/UDP " + src + ";branch=z9hG4bK1\r\n" +
			"From: <sip:101@callgate>;tag=a\r\nTo: <sip:callgate>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		req := msg.(*sip.Request)
		req.SetSource(src)
		h(req, nil)
	}
	send("10.1.1.1:5060")
	send("192.168.1.5:5060")
	s.SetPhones(sipnet.Networks{netip.MustParsePrefix("192.168.1.0/24")})
	send("10.1.1.1:5060")
	send("192.168.1.5:5060")
	if len(reached) != 2 || reached[0] != "10.1.1.1:5060" || reached[1] != "192.168.1.5:5060" {
		t.Fatalf("admitted %v, want 10.1.1.1 before the reload and 192.168.1.5 after", reached)
	}
}
