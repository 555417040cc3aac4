package registrar

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"callgate/sip/guard"

	"github.com/emiago/sipgo/sip"
	icdigest "github.com/icholy/digest"
)

// discardConn is a PacketConn that keeps the last datagram written.
type discardConn struct {
	net.PacketConn
	last []byte
}

func (d *discardConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	d.last = append(d.last[:0], b...)
	return len(b), nil
}

// BenchmarkUDPRegisterWithDigest measures the stateless UDP path for one
// phone registration: REGISTER -> 401, authorized REGISTER -> 200, parsing
// and answering included (the client's digest computation is not).
func BenchmarkUDPRegisterWithDigest(b *testing.B) {
	r := newTestRegistrar()
	shipped := *r.conf()
	shipped.Scanners = guard.NewScanners(guard.DefaultScannerUserAgents) // as shipped
	r.SetConfig(shipped)
	pc := &discardConn{}
	filter := r.UDPFilter(func(string) net.PacketConn { return pc })
	local := &net.UDPAddr{IP: net.IPv4(192, 168, 1, 1), Port: 5060}
	remote := &net.UDPAddr{IP: net.IPv4(192, 168, 1, 20), Port: 5062}
	props := sip.TransportReadProps{Transport: "UDP", LocalAddr: local, RemoteAddr: remote}
	msg := func(cseq int, callID, auth string) []byte {
		s := "REGISTER sip:192.168.1.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bK" + callID + fmt.Sprint(cseq) + ";rport\r\n" +
			"From: <sip:101@192.168.1.1>;tag=abc\r\nTo: <sip:101@192.168.1.1>\r\nCall-ID: " + callID + "\r\nCSeq: " + fmt.Sprint(cseq) + " REGISTER\r\n" +
			"Contact: <sip:101@192.168.1.20:5062>\r\nExpires: 300\r\nMax-Forwards: 70\r\nUser-Agent: bench\r\n"
		if auth != "" {
			s += "Authorization: " + auth + "\r\n"
		}
		return []byte(s + "Content-Length: 0\r\n\r\n")
	}
	// Precompute answers outside the timed loop: one challenge, many counts.
	filter(props, msg(1, "warm", ""))
	hdr := string(pc.last)
	i := strings.Index(hdr, "WWW-Authenticate: ")
	ch, err := icdigest.ParseChallenge(hdr[i+18 : i+strings.Index(hdr[i:], "\r\n")])
	if err != nil {
		b.Fatal(err)
	}
	const n = 4096
	reqs := make([][2][]byte, n)
	for k := range reqs {
		cred, _ := icdigest.Digest(ch, icdigest.Options{Method: "REGISTER", URI: "sip:192.168.1.1", Username: "101", Password: "Phone101pass", Count: k + 1})
		callID := fmt.Sprintf("call%d", k)
		reqs[k] = [2][]byte{msg(1, callID, ""), msg(2, callID, cred.String())}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for k := 0; k < b.N; k++ {
		if k%n == 0 && k > 0 {
			// new nonce counts would be replays: re-arm with a fresh registrar state
			b.StopTimer()
			r.auth = newTestRegistrar().auth
			filter = r.UDPFilter(func(string) net.PacketConn { return pc })
			filter(props, msg(1, "warm", ""))
			hdr = string(pc.last)
			i = strings.Index(hdr, "WWW-Authenticate: ")
			ch, _ = icdigest.ParseChallenge(hdr[i+18 : i+strings.Index(hdr[i:], "\r\n")])
			for j := range reqs {
				cred, _ := icdigest.Digest(ch, icdigest.Options{Method: "REGISTER", URI: "sip:192.168.1.1", Username: "101", Password: "Phone101pass", Count: j + 1})
				reqs[j][1] = msg(2, fmt.Sprintf("call%d", j), cred.String())
			}
			b.StartTimer()
		}
		q := reqs[k%n]
		filter(props, q[0])
		filter(props, q[1])
		if !strings.HasPrefix(string(pc.last), "SIP/2.0 200") {
			b.Fatalf("iteration %d: %s", k, pc.last[:40])
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "registrations/s")
}
