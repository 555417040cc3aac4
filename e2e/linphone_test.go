package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"callgate/gateway/calls"
	"callgate/media/g711"
	"callgate/media/rtptest"
	"callgate/sip/siptest"
)

var transports = []string{"udp", "tcp"}

// Linphone registers over UDP and over TCP only; callgate keeps its
// transport and echoes its +sip.instance (RFC 5626), and belle-sip finds
// its contact in the 200 and schedules its refresh from it.
func TestLinphoneRegisters(t *testing.T) {
	if !inLoopbackNetns(t) {
		return
	}
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			o, lp := linphoneOffice(t, siptest.LinphoneConfig{Transport: tr})
			var admin adminPhones
			res, body := o.d.do(t, "GET", o.d.url("/api/v1/admin"), testToken)
			if res.StatusCode != 200 || decodeInto(body, &admin) != nil {
				t.Fatalf("admin page: %d %s", res.StatusCode, body)
			}
			found := false
			for _, p := range admin.Phones {
				if p.Extension == "101" {
					found = true
					if p.Transport != tr || !strings.HasPrefix(p.UserAgent, "Linphone") {
						t.Fatalf("binding %+v, want transport %s", p, tr)
					}
				}
			}
			if !found {
				t.Fatalf("no binding of 101: %+v", admin.Phones)
			}
			oks := linphoneGot(t, lp, "SIP/2.0 200", "REGISTER")
			if len(oks) == 0 || !regexp.MustCompile(`(?m)^Contact: <sip:101@[^>]+>;expires=300;\+sip\.instance="<urn:uuid:[0-9a-f-]+>"`).MatchString(oks[0]) {
				t.Fatalf("the REGISTER 200 does not echo the phone's +sip.instance: %q", oks)
			}
			log, _ := os.ReadFile(lp.Log)
			// belle-sip takes the refresh interval from its own contact's
			// expires in the 200 (90% of the 300 s granted).
			if !strings.Contains(string(log), "scheduling next timer in 270000 ms for purpose [normal refresh]") {
				t.Fatal("belle-sip did not schedule its refresh from the granted expiry")
			}
		})
	}
}

// Linphone answers an inbound call from the VPBX over UDP and over TCP
// only; tones go both ways; hold and resume from the phone reach the
// VPBX; the recording holds both parties. Over TCP, callgate's requests
// reuse the connection the phone registered on.
func TestLinphoneInboundCallWithHold(t *testing.T) {
	if !inLoopbackNetns(t) {
		return
	}
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			o, lp := linphoneOffice(t, siptest.LinphoneConfig{Transport: tr, AutoAnswer: true, AVPF: true, RTCPMux: true})
			outside, _ := tonePeers(t)
			ctx := withTimeout(t, 40*time.Second)
			vpbxSide := o.linphoneAnswers(ctx, outside)
			if _, err := lp.Expect(`Call 1 .*connected`, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			if err := lp.Send("pause"); err != nil {
				t.Fatal(err)
			}
			o.reinvitesAtVPBX("sendonly", 5*time.Second)
			if _, err := lp.Expect(`Call 1 .*paused`, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			// The VPBX's recvonly answer to the hold reaches the phone.
			if holds := linphoneGot(t, lp, "SIP/2.0 200", "INVITE"); len(holds) != 1 || !strings.Contains(holds[0], "a=recvonly") {
				t.Fatalf("the answer to linphone's hold: %q", holds)
			}
			if err := lp.Send("resume"); err != nil {
				t.Fatal(err)
			}
			o.reinvitesAtVPBX("sendrecv", 5*time.Second)
			o.d.waitFor("the outside party hears linphone after resume", 5*time.Second, func() bool { return hears(outside, 1000) })
			// Talk. Linphone restarts its recording of what it hears when it
			// resumes, so this is the part its recording holds.
			time.Sleep(2500 * time.Millisecond)
			if tr == "tcp" {
				if n := listeningConnections(t, lp.SIPPort()); n != 0 {
					t.Fatalf("callgate opened %d connection(s) to the phone's listener instead of using its own", n)
				}
				if n := listeningConnections(t, o.d.cfg.SIPPort); n != 1 {
					t.Fatalf("%d connections from the phone to callgate, want the one it registered on", n)
				}
			}
			if err := vpbxSide.Hangup(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := lp.Expect(`Call 1 .*ended`, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			linphoneHeard(t, lp, 440)
			rec := o.lastCall()
			if rec.Result != "answered" || rec.HangupBy != "outside" || len(rec.Legs) != 1 || rec.Legs[0].Extension != "101" {
				t.Fatalf("record %+v", rec)
			}
			o.recordingHas(rec.Legs[0], 440, 1000)
		})
	}
}

// Linphone calls an outside number with its defaults (AVPF, ICE, rtcp-mux
// over UDP; plain over TCP only): the VPBX gets a plain RTP/AVP offer
// without ICE, Linphone gets its answer in the profile it offered, tones
// go both ways, and Linphone's hang-up ends the call as the employee's.
func TestLinphoneOutboundCall(t *testing.T) {
	if !inLoopbackNetns(t) {
		return
	}
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			o, lp := linphoneOffice(t, siptest.LinphoneConfig{Transport: tr, AVPF: true, ICE: tr == "udp", RTCPMux: true})
			outside, _ := tonePeers(t)
			ctx := withTimeout(t, 40*time.Second)
			if err := lp.Send("call sip:+74951112233@" + o.d.sipAddr()); err != nil {
				t.Fatal(err)
			}
			var in *siptest.IncomingCall
			select {
			case in = <-o.vpbx.Calls:
			case <-ctx.Done():
				t.Fatal("the VPBX got no INVITE")
			}
			offer := string(in.Request.Body())
			if !regexp.MustCompile(`m=audio \d+ RTP/AVP [0-9 ]+\r\n`).MatchString(offer) {
				t.Fatalf("the VPBX's offer is not plain RTP/AVP:\n%s", offer)
			}
			for _, bad := range []string{"AVPF", "ice-", "candidate", "rtcp-fb", "rtcp-mux"} {
				if strings.Contains(offer, bad) {
					t.Fatalf("the VPBX's offer keeps %q:\n%s", bad, offer)
				}
			}
			if _, err := in.Answer(ctx, siptest.AnswerSDP(in.Request.Body(), outside.Addr().String())); err != nil {
				t.Fatal(err)
			}
			toRelay, _ := siptest.MediaAddr(in.Request.Body())
			outside.SendTo(toRelay)
			if _, err := lp.Expect(`Call 1 .*connected`, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			o.d.waitFor("the outside party hears linphone", 10*time.Second, func() bool { return hears(outside, 1000) })
			answers := linphoneGot(t, lp, "SIP/2.0 200", "INVITE")
			if len(answers) == 0 || !regexp.MustCompile(`m=audio \d+ RTP/AVPF `).MatchString(answers[0]) {
				t.Fatalf("linphone's answer is not in the RTP/AVPF profile it offered: %q", answers)
			}
			time.Sleep(1500 * time.Millisecond) // talk
			if err := lp.Send("terminate"); err != nil {
				t.Fatal(err)
			}
			select {
			case <-in.Gone():
			case <-ctx.Done():
				t.Fatal("the VPBX's leg was not hung up")
			}
			if _, err := lp.Expect(`Call 1 .*ended`, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			linphoneHeard(t, lp, 440)
			rec := o.lastCall()
			if rec.Direction != "outbound" || rec.Result != "answered" || rec.HangupBy != "employee" || len(rec.Legs) != 1 {
				t.Fatalf("record %+v", rec)
			}
			o.recordingHas(rec.Legs[0], 440, 1000)
		})
	}
}

// Linphone offering Opus only gets 488 with a Warning naming what
// callgate relays; nothing is dialled.
func TestLinphoneOpusOnlyOfferRefused(t *testing.T) {
	if !inLoopbackNetns(t) {
		return
	}
	o, lp := linphoneOffice(t, siptest.LinphoneConfig{Codecs: []string{"opus"}})
	if err := lp.Send("call sip:+74951112233@" + o.d.sipAddr()); err != nil {
		t.Fatal(err)
	}
	if _, err := lp.Expect(`Call 1 .*(error|declined|not acceptable|Not Acceptable|ended)`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	refused := linphoneGot(t, lp, "SIP/2.0 488", "INVITE")
	if len(refused) != 1 || !regexp.MustCompile(`(?m)^Warning: 305 \S+ "[^"]*PCMA[^"]*"`).MatchString(refused[0]) {
		t.Fatalf("no 488 with a Warning naming the relayed codecs: %q", refused)
	}
	select {
	case in := <-o.vpbx.Calls:
		t.Fatalf("the VPBX was dialled: %s", in.Request.Recipient.String())
	case <-time.After(300 * time.Millisecond):
	}
}

// Linphone as the transferor of an inbound call, blind: to petrov's 103
// (over UDP and over TCP only) and to an outside number. Linphone sends
// its own BYE after the final NOTIFY (RFC 5589 §6); the outside party
// keeps talking to the target until it hangs up.
func TestLinphoneBlindTransfer(t *testing.T) {
	if !inLoopbackNetns(t) {
		return
	}
	for _, c := range []struct {
		name, transport, target string
	}{{"to-extension", "udp", "103"}, {"to-extension-over-tcp", "tcp", "103"}, {"to-outside-number", "udp", "89161112233"}} {
		t.Run(c.name, func(t *testing.T) {
			o, lp := linphoneOffice(t, siptest.LinphoneConfig{Transport: c.transport, AutoAnswer: true, AVPF: true})
			outside, _ := tonePeers(t)
			ctx := withTimeout(t, 40*time.Second)
			vpbxSide := o.linphoneAnswers(ctx, outside)
			time.Sleep(time.Second) // talk
			answered := o.answerTransfer(ctx, c.target != "103")
			if err := lp.Send(fmt.Sprintf("transfer sip:%s@%s", c.target, o.d.sipAddr())); err != nil {
				t.Fatal(err)
			}
			var target transferTarget
			select {
			case target = <-answered:
			case <-ctx.Done():
				t.Fatal("the transfer target was not called")
			}
			// Linphone hangs up its own leg once told the transfer worked.
			if _, err := lp.Expect(`Call 1 .*ended`, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			o.d.waitFor("outside and the target talk", 5*time.Second, func() bool { return hears(outside, 1500) && hears(target.peer, 440) })
			time.Sleep(1500 * time.Millisecond)
			select {
			case <-vpbxSide.Done():
				t.Fatal("the outside party was hung up after the transfer")
			case <-target.done:
				t.Fatal("the target was hung up after the transfer")
			default:
			}
			if !hears(outside, 1500) || !hears(target.peer, 440) {
				t.Fatal("outside and the target no longer hear each other")
			}
			linphoneHeard(t, lp, 440)
			if err := vpbxSide.Hangup(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case <-target.done:
			case <-ctx.Done():
				t.Fatal("the target was not hung up when the outside party was")
			}
			rec := o.lastCall()
			if rec.HangupBy != "outside" || rec.Result != "answered" || len(rec.Transfers) != 1 || rec.Transfers[0].From != "ivanov" {
				t.Fatalf("record %+v", rec)
			}
			o.recordingHas(rec.Legs[0], 440, 1000)
			if c.target == "103" {
				if len(rec.Legs) != 2 || rec.Legs[1].Employee != "petrov" {
					t.Fatalf("legs %+v", rec.Legs)
				}
				o.recordingHas(rec.Legs[1], 440, 1500)
			} else if rec.Transfers[0].To != "79161112233" {
				t.Fatalf("transfer %+v", rec.Transfers[0])
			}
		})
	}
}

// Linphone as the transferor of an inbound call, attended: it holds the
// outside party, calls petrov's 103, and then transfers the first
// call to the second (REFER with Replaces). The outside party ends up
// talking to petrov; Linphone's two calls end.
func TestLinphoneAttendedTransfer(t *testing.T) {
	if !inLoopbackNetns(t) {
		return
	}
	o, lp := linphoneOffice(t, siptest.LinphoneConfig{AutoAnswer: true, AVPF: true})
	outside, _ := tonePeers(t)
	petrov, err := rtptest.NewPeer(1500, g711.PCMA)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(petrov.Close)
	ctx := withTimeout(t, 40*time.Second)
	vpbxSide := o.linphoneAnswers(ctx, outside)
	if _, err := lp.Expect(`Call 1 .*connected`, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// linphonec wants the current call held before it places another.
	if err := lp.Send("pause"); err != nil {
		t.Fatal(err)
	}
	o.reinvitesAtVPBX("sendonly", 5*time.Second)
	if _, err := lp.Expect(`Call 1 .*paused`, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := lp.Send("call sip:103@" + o.d.sipAddr()); err != nil {
		t.Fatal(err)
	}
	in := nextCall(t, o.phones["103"])
	petrovSide, err := in.Answer(ctx, siptest.AnswerSDP(in.Request.Body(), petrov.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	toRelay, _ := siptest.MediaAddr(in.Request.Body())
	petrov.SendTo(toRelay)
	if _, err := lp.Expect(`Call 2 .*connected`, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // ivanov and petrov consult
	if err := lp.Send("transfer 1 --to-call 2"); err != nil {
		t.Fatal(err)
	}
	if _, err := lp.Expect(`(?s)Call 1 [^\n]*ended.*Call 2 [^\n]*ended|Call 2 [^\n]*ended.*Call 1 [^\n]*ended`, 10*time.Second); err != nil {
		t.Fatalf("linphone's two calls: %v", err)
	}
	// petrov's dialog is moved to the outside call's relay port.
	petrov.SendTo(reinviteTo(t, o.phones["103"], 5*time.Second))
	o.d.waitFor("outside and petrov talk", 5*time.Second, func() bool { return hears(outside, 1500) && hears(petrov, 440) })
	o.reinvitesAtVPBX("sendrecv", 5*time.Second) // the outside party is off hold
	time.Sleep(1500 * time.Millisecond)
	select {
	case <-petrovSide.Done():
		t.Fatal("petrov was hung up")
	case <-vpbxSide.Done():
		t.Fatal("the outside party was hung up")
	default:
	}
	if err := vpbxSide.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-petrovSide.Done():
	case <-ctx.Done():
		t.Fatal("petrov not hung up at the end")
	}
	var outer calls.Record
	o.d.waitFor("the outside call's record", 5*time.Second, func() bool {
		for _, r := range o.recentCalls(5) {
			if r.Direction == "inbound" && !r.Ended.IsZero() {
				outer = r
				return true
			}
		}
		return false
	})
	if outer.HangupBy != "outside" || len(outer.Legs) != 2 || outer.Legs[1].Employee != "petrov" ||
		len(outer.Transfers) != 1 || outer.Transfers[0].Mode != "attended" {
		t.Fatalf("record %+v", outer)
	}
	o.recordingHas(outer.Legs[0], 440, 1000)
	o.recordingHas(outer.Legs[1], 440, 1500)
}

// listeningConnections counts established TCP connections in this network
// namespace whose local port is port: connections someone opened to it.
func listeningConnections(t *testing.T, port int) int {
	t.Helper()
	n := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		file, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(file)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != "01" { // ESTABLISHED
				continue
			}
			_, hexPort, _ := strings.Cut(fields[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil && int(p) == port {
				n++
			}
		}
		file.Close()
	}
	return n
}

// transferTarget answers a transfer: petrov's 103 (a siptest phone) or an
// outside number at the VPBX, with a 1500 Hz tone.
type transferTarget struct {
	uri  string // what Linphone is told
	peer *rtptest.Peer
	done <-chan struct{}
}

func (o *office) answerTransfer(ctx context.Context, toOutside bool) chan transferTarget {
	o.t.Helper()
	peer, err := rtptest.NewPeer(1500, g711.PCMA)
	if err != nil {
		o.t.Fatal(err)
	}
	o.t.Cleanup(peer.Close)
	ch := make(chan transferTarget, 1)
	go func() {
		var in *siptest.IncomingCall
		select {
		case in = <-o.phones["103"].Calls:
		case in = <-o.vpbx.Calls:
			if !toOutside {
				return
			}
		case <-ctx.Done():
			return
		}
		c, err := in.Answer(ctx, siptest.SDP(peer.Addr().String()))
		if err != nil {
			return
		}
		to, _ := siptest.MediaAddr(in.Request.Body())
		peer.SendTo(to)
		ch <- transferTarget{uri: in.Request.Recipient.User, peer: peer, done: c.Done()}
	}()
	return ch
}

// adminPhones is the phones part of the admin page.
type adminPhones struct {
	Phones []struct {
		Extension string `json:"extension"`
		Transport string `json:"transport"`
		UserAgent string `json:"user_agent"`
	} `json:"phones"`
}

func decodeInto(b []byte, v any) error { return json.Unmarshal(b, v) }

// recentCalls is the newest n calls of the history.
func (o *office) recentCalls(n int) []calls.Record {
	o.t.Helper()
	var list struct{ Calls []calls.Record }
	res, err := o.d.get(fmt.Sprintf("/api/v1/calls?limit=%d", n), true)
	if err != nil {
		o.t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		o.t.Fatal(err)
	}
	return list.Calls
}
