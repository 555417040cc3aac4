package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"callgate/media/g711"
	"callgate/media/rtptest"
	"callgate/sip/siptest"

	"github.com/chromedp/chromedp"
	"github.com/emiago/sipgo"
)

// phoneBrowser starts headless Chromium whose microphone plays wav, with
// real (not muted) audio out and WebRTC allowed on loopback. The flags
// are listed by hand: chromedp's headless defaults mute the audio.
func phoneBrowser(t *testing.T, wav string, more ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	path := needTool(t, "chromium")
	var opts []chromedp.ExecAllocatorOption
	for _, o := range chromedp.DefaultExecAllocatorOptions {
		opts = append(opts, o)
	}
	opts = opts[3:] // NoFirstRun and NoDefaultBrowserCheck come back below, Headless (which mutes) does not
	opts = append(opts, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("headless", "new"), chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true), chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-file-for-fake-audio-capture", wav), chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"), chromedp.WindowSize(1400, 900))
	opts = append(opts, more...)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// toneWAV writes a 16-bit mono WAV of freq Hz long enough for a test.
func toneWAV(t *testing.T, freq float64) string {
	t.Helper()
	sox := needTool(t, "sox")
	wav := filepath.Join(t.TempDir(), fmt.Sprintf("tone%g.wav", freq))
	if out, err := exec.Command(sox, "-n", "-r", "48000", "-c", "1", "-b", "16", wav, "synth", "120", "sine", fmt.Sprint(freq), "vol", "0.5").CombinedOutput(); err != nil {
		t.Fatalf("sox: %v %s", err, out)
	}
	return wav
}

// pageHears reports the loudest frequency the page's call audio carries,
// measured with a WebAudio analyser on the stream the phone plays.
func pageHears(t *testing.T, b context.Context) float64 {
	t.Helper()
	return value(t, b, "analyse the call's audio", chromedp.Evaluate[float64](`(async () => {
		const a = document.getElementById('phone-audio');
		if (!a.srcObject) return 0;
		const ctx = new AudioContext();
		await ctx.resume();
		const an = ctx.createAnalyser();
		an.fftSize = 8192;
		ctx.createMediaStreamSource(a.srcObject).connect(an);
		await new Promise((r) => setTimeout(r, 700));
		const bins = new Float32Array(an.frequencyBinCount);
		an.getFloatFrequencyData(bins);
		let best = 0;
		for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
		const f = best * ctx.sampleRate / an.fftSize;
		ctx.close();
		return bins[best] > -90 ? f : 0;
	})()`, chromedp.EvalAwaitPromise))
}

// waitPageHears waits until the page hears freq (within 30 Hz).
func waitPageHears(t *testing.T, b context.Context, freq float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	got := 0.0
	for time.Now().Before(deadline) {
		if got = pageHears(t, b); got > freq-30 && got < freq+30 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the browser hears %.0f Hz, want %.0f Hz", got, freq)
}

type phoneStats struct {
	Codecs     []string
	DTLS, SRTP string
	Connection string
}

func (s phoneStats) g711() bool {
	for _, c := range s.Codecs {
		if c == "audio/PCMA" || c == "audio/PCMU" {
			return true
		}
	}
	return false
}

// TestConsolePhoneInChromium is the browser phone as an employee uses it:
// Chromium (its microphone a 440 Hz WAV) logs in and switches the phone
// on, which registers over WebSocket; an inbound call rings the card (and
// the desk phones), is answered from the card, each side hears the other
// (the page through WebAudio), getStats shows DTLS-SRTP and G.711, the
// recording has each tone on its own channel, and the VPBX's hang-up ends
// it; then a number typed in the click-to-call box reaches the VPBX
// normalised with callgate's digest, carries audio both ways, and the
// browser hangs up.
func TestConsolePhoneInChromium(t *testing.T) {
	if !inLoopbackNetns(t) {
		return
	}
	wav := toneWAV(t, 440)
	o := consoleOffice(t, nil, officeOpts{IvanovExtra: "role = \"admin\"\n"})
	b := phoneBrowser(t, wav)
	login(t, b, o.d.url(""), "ivanov")
	browse(t, b, "switch the browser phone on", chromedp.Click(chromedp.ID("phone-on")),
		chromedp.WaitVisible(chromedp.CSS(`#phone-state[data-state="phone.ready"]`)))
	// wsLines are the extensions registered over WebSocket, from the API.
	wsLines := func() []string {
		var admin struct {
			Phones []struct{ Extension, Transport string } `json:"phones"`
		}
		res, body := o.d.do(t, "GET", o.d.url("/api/v1/admin"), testToken)
		if res.StatusCode != 200 || decodeJSONBytes(body, &admin) != nil {
			t.Fatalf("admin: %d", res.StatusCode)
		}
		var lines []string
		for _, p := range admin.Phones {
			if p.Transport == "ws" {
				lines = append(lines, p.Extension)
			}
		}
		return lines
	}
	if lines := wsLines(); !slices.Equal(lines, []string{"101"}) || o.d.metric(`callgate_registered_contacts_by_transport{transport="ws"}`) != 1 {
		t.Fatalf("WebSocket registrations %v, want ivanov's first line", lines)
	}
	// Ivanov has two lines: the phone moves to the one chosen beside the
	// switch, and back.
	for _, line := range []string{"102", "101"} {
		browse(t, b, "choose line "+line, chromedp.WaitVisible(chromedp.ID("phone-line")), chromedp.Evaluate[chromedp.Void](
			`(() => { const s = document.getElementById('phone-line'); s.value = '`+line+`'; s.dispatchEvent(new Event('change')); })()`))
		o.d.waitFor("the browser registered as "+line+" only", 10*time.Second, func() bool { return slices.Equal(wsLines(), []string{line}) })
		browse(t, b, "the phone is ready on "+line, chromedp.WaitVisible(chromedp.CSS(`#phone-state[data-state="phone.ready"]`)))
	}
	browse(t, b, "the admin page shows the browser's registration", chromedp.Navigate(o.d.url("/#/admin")),
		chromedp.WaitVisible(chromedp.CSS(`#admin-phones tr[data-ext="101"]`)))
	rows := value(t, b, "registrations on the admin page", chromedp.Evaluate[[]string](`[...document.querySelectorAll('#admin-phones tr[data-ext="101"]')].map((r) => r.textContent)`))
	if !slices.ContainsFunc(rows, func(r string) bool { return strings.Contains(r, "(ws)") && strings.Contains(r, "callgate console") }) {
		t.Fatalf("the admin page's rows of 101: %q", rows)
	}
	screenshot(t, b, "browser-phone-admin")
	browse(t, b, "back to the calls", chromedp.Navigate(o.d.url("/#/calls")), chromedp.WaitVisible(chromedp.ID("calls")),
		chromedp.WaitVisible(chromedp.CSS(`#phone-state[data-state="phone.ready"]`)))

	// An inbound call: the card rings with Answer, the desk phones too.
	outside, err := rtptest.NewPeer(1000, g711.PCMA)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(outside.Close)
	ctx := withTimeout(t, 90*time.Second)
	vpbxSide := answerInBrowser(t, ctx, o, b, outside, "browser-phone-ringing")
	st := value(t, b, "getStats", chromedp.Evaluate[phoneStats](`window.callgatePhone.stats()`, chromedp.EvalAwaitPromise))
	if st.DTLS != "connected" || st.SRTP == "" || !st.g711() {
		t.Fatalf("getStats: %+v, want DTLS connected, an SRTP cipher and G.711", st)
	}
	first := o.activeCallID()
	// A second call while the browser talks: the browser's line is busy
	// (486) and the desk phones ring; once they refuse too, the VPBX is
	// told busy.
	second := make(chan error, 1)
	go func() {
		_, err := o.vpbx.Invite(ctx, "sales1", "79161230000", siptest.SDP("127.0.0.1:9"))
		second <- err
	}()
	value(t, b, "the browser refuses the second call", chromedp.Poll[bool](`window.callgatePhone.busyRefused() === 1`))
	for _, ext := range []string{"101", "102"} {
		refused := false
		for range 4 { // past the first call's rings, cancelled, still queued
			if c := nextCall(t, o.phones[ext]); strings.Contains(c.From(), "9161230000") {
				if err := c.Reject(486, "Busy Here"); err != nil {
					t.Fatal(err)
				}
				refused = true
				break
			}
		}
		if !refused {
			t.Fatalf("desk phone %s did not ring with the second call", ext)
		}
	}
	select {
	case err := <-second:
		var de *sipgo.ErrDialogResponse
		if !errors.As(err, &de) || de.Res.StatusCode != 486 {
			t.Fatalf("the second call while the browser talked: %v, want 486", err)
		}
	case <-ctx.Done():
		t.Fatal("the second call was not refused")
	}
	if n := value(t, b, "cards with Answer", chromedp.Evaluate[int](`document.querySelectorAll('.popup button.answer').length`)); n != 0 {
		t.Fatalf("%d cards offer Answer while the browser talks", n)
	}
	// Hold from the card: the VPBX is re-INVITEd sendonly, then sendrecv.
	for _, want := range []string{"a=sendonly", "a=sendrecv"} {
		label := map[string]string{"a=sendonly": "Удержать", "a=sendrecv": "Продолжить"}[want]
		time.Sleep(time.Second)
		value(t, b, "the hold button reads "+label, chromedp.Poll[bool](`(document.querySelector('.popup button.hold') || {}).textContent === '`+label+`'`))
		browse(t, b, "hold or resume from the card", chromedp.Evaluate[chromedp.Void](`document.querySelector('.popup button.hold').click()`))
		if !vpbxReinvited(o, want, 10*time.Second) {
			t.Fatalf("no re-INVITE with %s at the VPBX; the phone's last error: %q", want, value(t, b, "last error", chromedp.Evaluate[string](`window.callgatePhone.lastError()`)))
		}
	}
	waitPageHears(t, b, 1000)
	time.Sleep(time.Second)
	if err := vpbxSide.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	browse(t, b, "the card goes with the call", chromedp.WaitNotPresent(chromedp.CSS(".popup")))
	rec := o.call(first)
	if rec.Result != "answered" || len(rec.Legs) != 1 || rec.Legs[0].Employee != "ivanov" {
		t.Fatalf("record %+v", rec)
	}
	o.recordingHas(rec.Legs[0], 1000, 440)

	// The click-to-call box dials from the browser phone.
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
	// The microphone is held shut until the VPBX has the call: the offer
	// must not wait for it, and it must replace the silence once open.
	browse(t, b, "hold the microphone shut", chromedp.Evaluate[chromedp.Void](`(() => {
		const open = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
		const shut = new Promise((resolve) => { window.openMic = resolve; });
		navigator.mediaDevices.getUserMedia = (c) => shut.then(() => open(c));
	})()`))
	browse(t, b, "dial from the click-to-call box", chromedp.SendKeys(chromedp.ID("dial-number"), "8 (916) 123-45-67"),
		chromedp.Click(chromedp.ID("dial-submit")))
	var at *siptest.IncomingCall
	select {
	case at = <-got:
	case <-ctx.Done():
		t.Fatal("the browser's call did not reach the VPBX while its microphone was still opening")
	}
	browse(t, b, "the microphone opens", chromedp.Evaluate[chromedp.Void](`window.openMic()`))
	if at.Request.Recipient.User != "79161234567" || at.Request.GetHeader("Proxy-Authorization") == nil {
		t.Fatalf("the VPBX got %s, want the normalised number with callgate's digest", at.Request.Recipient.String())
	}
	toRelay, _ := siptest.MediaAddr(at.Request.Body())
	outside.ResetGap()
	outside.SendTo(toRelay)
	o.d.waitFor("the outside party hears the browser", 10*time.Second, func() bool { return hears(outside, 440) })
	waitPageHears(t, b, 1000)
	// The keypad sends tones down the call (RFC 4733, under the browser's
	// own payload type, kept end to end).
	pt, ok := siptest.TelephoneEvent(at.Request.Body())
	if !ok {
		t.Fatalf("the browser's call offers no telephone-event:\n%s", at.Request.Body())
	}
	outside.SetEventPT(pt)
	browse(t, b, "tones from the keypad", chromedp.SendKeys(chromedp.CSS("#dial-state .phone-dtmf"), "1#"))
	o.d.waitFor("the VPBX side gets the tones 1 and #", 10*time.Second, func() bool { return bytes.Equal(outside.Events(), []byte{1, 11}) })
	// A dialled call holds and resumes from the dial bar too.
	for _, want := range []string{"a=sendonly", "a=sendrecv"} {
		label := map[string]string{"a=sendonly": "Удержать", "a=sendrecv": "Продолжить"}[want]
		value(t, b, "the dial bar's hold button reads "+label, chromedp.Poll[bool](`(document.querySelector('#dial-state button.hold') || {}).textContent === '`+label+`'`))
		browse(t, b, "hold or resume from the dial bar", chromedp.Evaluate[chromedp.Void](`document.querySelector('#dial-state button.hold').click()`))
		if !vpbxReinvited(o, want, 10*time.Second) {
			t.Fatalf("no re-INVITE with %s at the VPBX from the dial bar", want)
		}
	}
	// The bar is drawn again once the resume is answered: hang up then.
	value(t, b, "the dial bar back to Hold", chromedp.Poll[bool](`(document.querySelector('#dial-state button.hold') || {}).textContent === 'Удержать'`))
	browse(t, b, "hang up from the browser", chromedp.Click(chromedp.ID("phone-hangup")))
	select {
	case <-at.Gone():
	case <-ctx.Done():
		t.Fatal("the VPBX side was not hung up by the browser")
	}
	if rec := o.lastCall(); rec.Direction != "outbound" || rec.Result != "answered" || rec.HangupBy != "employee" || !strings.HasSuffix(rec.Outside, "79161234567") {
		t.Fatalf("record %+v", rec)
	}

	// A blind transfer from the browser's card to petrov's 103: the client
	// talks to 103, the browser's call ends.
	petrov, err := rtptest.NewPeer(1500, g711.PCMA)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(petrov.Close)
	vpbxSide = answerInBrowser(t, ctx, o, b, outside, "")
	browse(t, b, "transfer from the card", chromedp.Click(chromedp.CSS(".popup button.transfer")),
		chromedp.WaitVisible(chromedp.CSS(".popup .transfer-to")), chromedp.SetValue(chromedp.CSS(".popup .transfer-to"), "103"), chromedp.Click(chromedp.CSS(".popup .transfer-go")))
	target := nextCall(t, o.phones["103"])
	if _, err := target.Answer(ctx, siptest.SDP(petrov.Addr().String())); err != nil {
		t.Fatal(err)
	}
	toB, _ := siptest.MediaAddr(target.Request.Body())
	petrov.SendTo(toB)
	o.d.waitFor("the client talks to 103", 10*time.Second, func() bool { return hears(outside, 1500) && hears(petrov, 1000) })
	browse(t, b, "the browser's call ends with the transfer", chromedp.WaitNotPresent(chromedp.CSS(".popup")))
	if err := vpbxSide.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if rec := o.lastCall(); len(rec.Legs) != 2 || rec.Legs[1].Employee != "petrov" || len(rec.Transfers) != 1 {
		t.Fatalf("record %+v", rec)
	}
}

// answerInBrowser has the VPBX call ivanov's account: the card rings with
// Answer beside the desk phone, is answered, the desk phone stops ringing,
// and the client (outside, 1000 Hz) and the browser (440 Hz) hear each
// other. It returns the VPBX's side of the call; shot, when set, names a
// screenshot of the ringing card.
func answerInBrowser(t *testing.T, ctx context.Context, o *office, b context.Context, outside *rtptest.Peer, shot string) *siptest.Call {
	t.Helper()
	done := make(chan *siptest.Call, 1)
	go func() {
		if c, err := o.vpbx.Invite(ctx, "sales1", "79161234567", siptest.SDP(outside.Addr().String())); err == nil {
			done <- c
		}
	}()
	desk := nextCall(t, o.phones["101"])
	browse(t, b, "the card rings with Answer", chromedp.WaitVisible(chromedp.CSS(".popup button.answer")))
	if shot != "" {
		screenshot(t, b, shot)
	}
	browse(t, b, "answer from the card", chromedp.Click(chromedp.CSS(".popup button.answer")))
	select {
	case <-desk.Gone():
	case <-ctx.Done():
		t.Fatal("the desk phone kept ringing after the browser answered")
	}
	var vpbxSide *siptest.Call
	select {
	case vpbxSide = <-done:
	case <-ctx.Done():
		t.Fatal("the VPBX's call was not answered")
	}
	toRelay, _ := siptest.MediaAddr(vpbxSide.Remote)
	outside.SendTo(toRelay)
	o.d.waitFor("the client hears the browser's microphone", 10*time.Second, func() bool { return hears(outside, 440) })
	waitPageHears(t, b, 1000)
	return vpbxSide
}

// vpbxReinvited waits for a re-INVITE at the VPBX whose SDP holds want.
func vpbxReinvited(o *office, want string, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		select {
		case r := <-o.vpbx.Requests:
			if r.Method == "INVITE" && strings.Contains(string(r.Body()), want) {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

// TestConsolePhoneNeedsHTTPS: browsers give the microphone only to https
// pages (and loopback); a console reached over plain http by a name says
// so instead of failing silently, and the phone stays off.
func TestConsolePhoneNeedsHTTPS(t *testing.T) {
	if !inLoopbackNetns(t) {
		return
	}
	o := consoleOffice(t, nil, officeOpts{})
	b := phoneBrowser(t, toneWAV(t, 440), chromedp.Flag("host-resolver-rules", "MAP callgate.office.test 127.0.0.1"))
	login(t, b, fmt.Sprintf("http://callgate.office.test:%d", o.d.cfg.HTTPPort), "ivanov")
	browse(t, b, "switch the browser phone on over http", chromedp.Click(chromedp.ID("phone-on")),
		chromedp.WaitVisible(chromedp.CSS(`#phone-state[data-state="phone.insecure"]`)))
	if value(t, b, "the phone switch", chromedp.Evaluate[bool](`document.getElementById('phone-on').checked`)) {
		t.Fatal("the phone stays switched on without https")
	}
	if n := o.d.metric(`callgate_registered_contacts_by_transport{transport="ws"}`); n != 0 {
		t.Fatalf("%v WebSocket registrations", n)
	}
}

// TestConsolePhoneReconnects: the browser phone's connection is cut (a
// network drop, a proxy's reload) while the console stays open; the phone
// connects again by itself, with a fresh password, and rings again.
func TestConsolePhoneReconnects(t *testing.T) {
	if !inLoopbackNetns(t) {
		return
	}
	o := consoleOffice(t, nil, officeOpts{})
	link := newCuttableLink(t, fmt.Sprintf("127.0.0.1:%d", o.d.cfg.HTTPPort))
	b := phoneBrowser(t, toneWAV(t, 440))
	login(t, b, "http://"+link.addr, "ivanov")
	browse(t, b, "switch the browser phone on", chromedp.Click(chromedp.ID("phone-on")),
		chromedp.WaitVisible(chromedp.CSS(`#phone-state[data-state="phone.ready"]`)))
	// The phone's texts follow the language switch.
	browse(t, b, "switch to English", chromedp.Click(chromedp.ID("lang")))
	if s := value(t, b, "the phone's state in English", chromedp.Evaluate[string](`document.getElementById('phone-state').textContent`)); s != "phone ready" {
		t.Fatalf("the phone's state after switching to English: %q", s)
	}
	upgrades := o.d.metric("callgate_sip_ws_upgrades_total")
	link.cut()
	pc, cancel := context.WithTimeout(b, 15*time.Second)
	_, err := chromedp.Run(pc, chromedp.Poll[bool](`window.callgatePhone.reconnects() === 1 && window.callgatePhone.ready()`))
	cancel()
	if err != nil {
		t.Fatalf("the phone did not connect again: %v; the page: %s", err, value(t, b, "the phone's state", chromedp.Evaluate[string](
			`JSON.stringify({state: window.callgatePhone.state(), ready: window.callgatePhone.ready(), reconnects: window.callgatePhone.reconnects(), error: window.callgatePhone.lastError()})`)))
	}
	if n := o.d.metric("callgate_sip_ws_upgrades_total"); n != upgrades+1 {
		t.Fatalf("%v WebSocket connections after the cut, want %v", n, upgrades+1)
	}
	o.d.waitFor("one WebSocket registration, the new connection's", 5*time.Second, func() bool {
		return o.d.metric(`callgate_registered_contacts_by_transport{transport="ws"}`) == 1 && o.d.metric("callgate_sip_ws_connections") == 1
	})
	// It rings again.
	ctx := withTimeout(t, 30*time.Second)
	go func() { _, _ = o.vpbx.Invite(ctx, "sales1", "79161234567", siptest.SDP("127.0.0.1:9")) }()
	browse(t, b, "the card rings with Answer", chromedp.WaitVisible(chromedp.CSS(".popup button.answer")))
}

// cuttableLink is a TCP path to callgate that the test can cut, closing
// every connection through it at once, while new ones still pass.
type cuttableLink struct {
	addr  string
	mu    sync.Mutex
	conns []net.Conn
}

func newCuttableLink(t *testing.T, to string) *cuttableLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &cuttableLink{addr: ln.Addr().String()}
	t.Cleanup(func() { ln.Close(); l.cut() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", to)
			if err != nil {
				in.Close()
				continue
			}
			l.mu.Lock()
			l.conns = append(l.conns, in, out)
			l.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	return l
}

func (l *cuttableLink) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}
