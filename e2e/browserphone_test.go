package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"callgate/media/g711"
	"callgate/media/rtptest"
	"callgate/media/webrtc/webrtctest"
	"callgate/sip/siptest"

	"github.com/emiago/sipgo"
)

// phonePass asks the console API for the logged-in employee's browser
// phone credentials.
func phonePass(t *testing.T, client *http.Client, d *daemon) (user, password string) {
	t.Helper()
	req, _ := http.NewRequest("POST", d.url("/api/v1/phone"), nil)
	req.Header.Set("X-CSRF-Token", csrfOf(t, client, d))
	res, err := client.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("phone pass: %v %v", err, res)
	}
	defer res.Body.Close()
	var p struct{ Username, Password string }
	if err := decodeJSON(res, &p); err != nil {
		t.Fatal(err)
	}
	return p.Username, p.Password
}

// browserOffice is an office whose ivanov also has a browser phone: a
// sipgo phone over WebSocket from the console's origin, registered with
// the console session's pass, whose media a pion peer carries.
func browserOffice(t *testing.T, mediaTimeout string, noNetlink ...bool) (*office, *siptest.Phone) {
	t.Helper()
	o := consoleOffice(t, nil, officeOpts{MediaTimeout: mediaTimeout, NoNetlink: len(noNetlink) > 0 && noNetlink[0]})
	user, pass := phonePass(t, apiLogin(t, o.d.url(""), "ivanov"), o.d)
	origin := fmt.Sprintf("http://127.0.0.1:%d", o.d.cfg.HTTPPort)
	br, err := siptest.NewPhone(siptest.PhoneConfig{User: user, Password: pass, Transport: "ws", Server: fmt.Sprintf("127.0.0.1:%d", o.d.cfg.HTTPPort), Origin: origin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(br.Close)
	mustRegister(t, br)
	return o, br
}

func newBrowser(t *testing.T, freq float64, codecs ...string) *webrtctest.Browser {
	t.Helper()
	b, err := webrtctest.NewBrowser(freq, webrtctest.Options{Codecs: codecs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func browserHears(b *webrtctest.Browser, freq float64) bool {
	return rtptest.Has(b.Heard(400*time.Millisecond), freq)
}

// TestBrowserPhoneAnswersForksAndRecords: the VPBX calls ivanov's account;
// his browser and both desk lines ring, the browser answers first and the
// desk phones are cancelled; each side hears the other over DTLS-SRTP and
// the recording has each tone on its own channel; the VPBX's hang-up ends
// the browser's call.
func TestBrowserPhoneAnswersForksAndRecords(t *testing.T) {
	// callgate runs as the systemd unit restricts it: no netlink sockets,
	// which pion would use to list interfaces (TestNetlinkDenied checks
	// the restriction bites).
	o, br := browserOffice(t, "10s", true)
	outside, err := rtptest.NewPeer(1000, g711.PCMA)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(outside.Close)
	b := newBrowser(t, 440, "PCMA", "PCMU")
	ctx := withTimeout(t, 30*time.Second)
	done := make(chan *siptest.Call, 1)
	go func() {
		c, err := o.vpbx.Invite(ctx, "sales1", "79161234567", siptest.SDP(outside.Addr().String()))
		if err == nil {
			done <- c
		}
	}()
	in := nextCall(t, br)
	desk1, desk2 := nextCall(t, o.phones["101"]), nextCall(t, o.phones["102"])
	offer := string(in.Request.Body())
	for _, want := range []string{"UDP/TLS/RTP/SAVPF", "a=ice-lite", "a=fingerprint:", "a=rtcp-mux"} {
		if !strings.Contains(offer, want) {
			t.Fatalf("the browser's offer lacks %q:\n%s", want, offer)
		}
	}
	if desk := string(desk1.Request.Body()); strings.Contains(desk, "SAVPF") || strings.Contains(desk, "fingerprint") {
		t.Fatalf("the desk phone got WebRTC SDP:\n%s", desk)
	}
	answer, err := b.Accept(in.Request.Body())
	if err != nil {
		t.Fatal(err)
	}
	call, err := in.Answer(ctx, answer)
	if err != nil {
		t.Fatal(err)
	}
	for _, desk := range []*siptest.IncomingCall{desk1, desk2} {
		select {
		case <-desk.Gone():
		case <-ctx.Done():
			t.Fatal("a desk line kept ringing after the browser answered")
		}
	}
	var vpbxSide *siptest.Call
	select {
	case vpbxSide = <-done:
	case <-ctx.Done():
		t.Fatal("the VPBX's call was not answered")
	}
	toRelay, _ := siptest.MediaAddr(vpbxSide.Remote)
	outside.SendTo(toRelay)
	o.d.waitFor("the VPBX side and the browser hear each other", 10*time.Second, func() bool { return hears(outside, 440) && browserHears(b, 1000) })
	if o.d.metric("callgate_webrtc_legs") != 1 || o.d.metric("callgate_webrtc_connected_total") != 1 {
		t.Fatalf("webrtc metrics: %v legs, %v connected", o.d.metric("callgate_webrtc_legs"), o.d.metric("callgate_webrtc_connected_total"))
	}
	time.Sleep(1500 * time.Millisecond)
	if err := vpbxSide.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-call.Done():
	case <-ctx.Done():
		t.Fatal("the browser's call did not end with the VPBX's")
	}
	rec := o.lastCall()
	if rec.Result != "answered" || len(rec.Legs) != 1 || rec.Legs[0].Employee != "ivanov" || rec.HangupBy != "outside" {
		t.Fatalf("record %+v", rec)
	}
	o.recordingHas(rec.Legs[0], 1000, 440)
	o.d.waitMetric("callgate_webrtc_legs", 0, 5*time.Second)
}

// TestBrowserPhoneDialsOut: the browser calls a number in a national
// spelling; the VPBX receives it normalised, with callgate's digest, and
// the call carries audio both ways until the browser hangs up.
func TestBrowserPhoneDialsOut(t *testing.T) {
	o, br := browserOffice(t, "10s")
	outside, err := rtptest.NewPeer(1000, g711.PCMA)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(outside.Close)
	b := newBrowser(t, 440, "PCMA", "PCMU")
	ctx := withTimeout(t, 30*time.Second)
	got := make(chan *siptest.IncomingCall, 1)
	go func() {
		select {
		case in := <-o.vpbx.Calls:
			if _, err := in.Answer(ctx, siptest.AnswerSDP(in.Request.Body(), outside.Addr().String())); err == nil {
				got <- in
			}
		case <-ctx.Done():
		}
	}()
	offer, err := b.Offer()
	if err != nil {
		t.Fatal(err)
	}
	call, err := br.Dial(ctx, "89161234567", offer)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Answered(call.Remote); err != nil {
		t.Fatal(err)
	}
	var at *siptest.IncomingCall
	select {
	case at = <-got:
	case <-ctx.Done():
		t.Fatal("no call at the VPBX")
	}
	if at.Request.Recipient.User != "79161234567" || at.Request.GetHeader("Proxy-Authorization") == nil {
		t.Fatalf("the VPBX got %s, want the normalised number with callgate's digest", at.Request.Recipient.String())
	}
	toRelay, _ := siptest.MediaAddr(at.Request.Body())
	outside.SendTo(toRelay)
	o.d.waitFor("the browser and the outside party hear each other", 10*time.Second, func() bool { return hears(outside, 440) && browserHears(b, 1000) })
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	rec := o.lastCall()
	if rec.Direction != "outbound" || rec.Result != "answered" || rec.Outside != "+79161234567" || rec.HangupBy != "employee" {
		t.Fatalf("record %+v", rec)
	}
}

// TestBrowserPhoneBlindTransfer: the browser transfers the client to
// extension 103 from the call; the client talks to 103 and the browser's
// call ends.
func TestBrowserPhoneBlindTransfer(t *testing.T) {
	o, br := browserOffice(t, "10s")
	outside, petrov := tonePeersAt(t, 1000, 1500)
	b := newBrowser(t, 440, "PCMA", "PCMU")
	ctx := withTimeout(t, 30*time.Second)
	done := make(chan *siptest.Call, 1)
	go func() {
		c, err := o.vpbx.Invite(ctx, "sales1", "79161234567", siptest.SDP(outside.Addr().String()))
		if err == nil {
			done <- c
		}
	}()
	in := nextCall(t, br)
	answer, err := b.Accept(in.Request.Body())
	if err != nil {
		t.Fatal(err)
	}
	call, err := in.Answer(ctx, answer)
	if err != nil {
		t.Fatal(err)
	}
	vpbxSide := <-done
	toRelay, _ := siptest.MediaAddr(vpbxSide.Remote)
	outside.SendTo(toRelay)
	o.d.waitFor("the client and the browser talk", 10*time.Second, func() bool { return hears(outside, 440) && browserHears(b, 1000) })
	if code, err := call.Refer(ctx, "sip:103@vpbx.test", ""); err != nil || code != 202 {
		t.Fatalf("REFER from the browser: %d %v", code, err)
	}
	target := nextCall(t, o.phones["103"])
	if _, err := target.Answer(ctx, siptest.SDP(petrov.Addr().String())); err != nil {
		t.Fatal(err)
	}
	toB, _ := siptest.MediaAddr(target.Request.Body())
	petrov.SendTo(toB)
	select {
	case <-call.Done():
	case <-ctx.Done():
		t.Fatal("the browser was not released after the transfer")
	}
	o.d.waitFor("the client talks to 103", 10*time.Second, func() bool { return hears(outside, 1500) && hears(petrov, 1000) })
	if err := vpbxSide.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	rec := o.lastCall()
	if len(rec.Legs) != 2 || rec.Legs[1].Employee != "petrov" || len(rec.Transfers) != 1 || rec.Transfers[0].Mode != "blind" {
		t.Fatalf("record %+v", rec)
	}
}

// TestBrowserICENeverCompletes: a browser answers but its ICE never
// starts; the media timeout hangs up both sides and says why.
func TestBrowserICENeverCompletes(t *testing.T) {
	o, br := browserOffice(t, "3s")
	ctx := withTimeout(t, 30*time.Second)
	done := make(chan *siptest.Call, 1)
	go func() {
		c, err := o.vpbx.Invite(ctx, "sales1", "79161234567", siptest.SDP("127.0.0.1:30990"))
		if err == nil {
			done <- c
		}
	}()
	in := nextCall(t, br)
	b := newBrowser(t, 440, "PCMA", "PCMU")
	answer, err := b.Accept(in.Request.Body())
	if err != nil {
		t.Fatal(err)
	}
	b.Close() // gone before a single ICE check
	call, err := in.Answer(ctx, answer)
	if err != nil {
		t.Fatal(err)
	}
	vpbxSide := <-done
	for name, ended := range map[string]<-chan struct{}{"browser": call.Done(), "VPBX": vpbxSide.Done()} {
		select {
		case <-ended:
		case <-ctx.Done():
			t.Fatalf("the %s side was not hung up", name)
		}
	}
	if rec := o.lastCall(); rec.HangupBy != "timeout" || !strings.Contains(rec.Reason, "media timeout") {
		t.Fatalf("record %+v", rec)
	}
}

func tonePeersAt(t *testing.T, a, b float64) (*rtptest.Peer, *rtptest.Peer) {
	t.Helper()
	return peerOf(t, a), peerOf(t, b)
}

// TestNetlinkDenied checks the restriction TestBrowserPhoneAnswersForksAndRecords
// runs callgate under: through the same wrapper, ip(8), which lists links
// over netlink, fails.
func TestNetlinkDenied(t *testing.T) {
	ip := needTool(t, "ip")
	cmd := exec.Command(os.Args[0], "-o", "link")
	cmd.Env = append(os.Environ(), noNetlinkEnv+"="+ip)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(strings.ToLower(string(out)), "address family not supported") {
		t.Fatalf("ip link under the wrapper: %v\n%s", err, out)
	}
	if out, err := exec.Command(ip, "-o", "link").CombinedOutput(); err != nil {
		t.Fatalf("ip link without the wrapper: %v\n%s", err, out)
	}
}

// TestBrowserOfferWithoutG711: a browser that offers no PCMA or PCMU gets
// 488 with a warning saying why, and the VPBX is never called.
func TestBrowserOfferWithoutG711(t *testing.T) {
	o, br := browserOffice(t, "10s")
	b := newBrowser(t, 440, "opus")
	offer, err := b.Offer()
	if err != nil {
		t.Fatal(err)
	}
	ctx := withTimeout(t, 10*time.Second)
	_, err = br.Dial(ctx, "89161234567", offer)
	var de *sipgo.ErrDialogResponse
	if !errors.As(err, &de) || de.Res.StatusCode != 488 {
		t.Fatalf("an opus-only offer: %v, want 488", err)
	}
	if w := de.Res.GetHeader("Warning"); w == nil || !strings.Contains(w.Value(), "G.711") {
		t.Fatalf("488 without a warning naming G.711: %v", w)
	}
	select {
	case c := <-o.vpbx.Calls:
		t.Fatalf("the VPBX was called: %s", c.Request.Recipient.String())
	case <-time.After(500 * time.Millisecond):
	}
	if o.d.metric("callgate_webrtc_legs") != 0 {
		t.Fatal("a refused call left a WebRTC leg open")
	}
}
