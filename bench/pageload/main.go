// Command pageload times the browser phone as an employee meets it, in
// headless Chromium (its microphone a WAV file) against a running
// callgate: each round loads the console (logged in, phone switched on),
// waits for the phone to register, has the VPBX stand-in call the
// employee's account, answers on the card as soon as it rings and waits
// for the call's WebRTC connection; then the VPBX hangs up. It reports,
// per round and as p50/p99: page load → phone registered, page load →
// ICE and DTLS connected, INVITE sent → the card rings, and answer → ICE
// connected. The first -warmup rounds are reported apart: a browser's
// first call starts its audio service, a one-off of a few hundred
// milliseconds of CPU that is not the page's. Every loop is bounded by
// -warmup, -rounds and their timeouts.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"time"

	"callgate/sip/siptest"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/emiago/sipgo/sip"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:18091", "callgate's console")
	login := flag.String("login", "e30000", "the employee who logs in")
	password := flag.String("password", "", "their console password")
	account := flag.String("account", "acc30000", "the VPBX account that rings them")
	vpbxAddr := flag.String("listen", "127.0.0.1:5071", "the VPBX stand-in's address (callgate's upstream.registrar)")
	wav := flag.String("wav", "", "the microphone: a WAV file (absolute path)")
	chromium := flag.String("chromium", "chromium", "Chromium's binary")
	rounds := flag.Int("rounds", 30, "page loads measured")
	warmup := flag.Int("warmup", 1, "page loads before them, reported apart: the browser's first call starts its audio service")
	flag.Parse()
	sip.SetDefaultLogger(slog.New(slog.DiscardHandler))
	vpbx, err := siptest.NewVPBX(siptest.VPBXConfig{Listen: *vpbxAddr, Domain: "vpbx.bench", Accounts: map[string]string{*account: "Secret123"}, Grant: 3600})
	if err != nil {
		fail(err)
	}
	defer vpbx.Close()
	select {
	case <-vpbx.Registrations:
	case <-time.After(30 * time.Second):
		fail(fmt.Errorf("callgate did not register %s", *account))
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[3:], chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.ExecPath(*chromium),
		chromedp.NoSandbox, chromedp.Flag("headless", "new"), chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true), chromedp.Flag("use-file-for-fake-audio-capture", *wav),
		chromedp.Flag("allow-loopback-in-peer-connection", true), chromedp.Flag("autoplay-policy", "no-user-gesture-required"))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	b, cancel := chromedp.NewContext(alloc)
	defer cancel()
	// The browser belongs to the context of its first run: start it on b,
	// not on a step's context with a timeout, which would close it.
	if err := chromedp.Do(b); err != nil {
		fail(fmt.Errorf("start chromium: %w", err))
	}
	run := func(what string, d time.Duration, actions ...chromedp.Action[chromedp.Void]) {
		ctx, c := context.WithTimeout(b, d)
		defer c()
		if err := chromedp.Do(ctx, actions...); err != nil {
			fail(fmt.Errorf("%s: %w", what, err))
		}
	}
	run("log in", 30*time.Second, chromedp.Navigate(*base+"/"), chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SendKeys(chromedp.ID("login-user"), *login), chromedp.SendKeys(chromedp.ID("login-password"), *password),
		chromedp.Click(chromedp.ID("login-submit")), chromedp.WaitVisible(chromedp.ID("calls")),
		chromedp.Evaluate[chromedp.Void](`localStorage.setItem('phone:' + session.employee, '1')`),
		// The page's steps are marked (pageMarks) before its own scripts run.
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := cdp.Call(ctx, t, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: pageMarks})
			return err
		}))
	poll := func(what, expr string, d time.Duration) {
		ctx, c := context.WithTimeout(b, d)
		defer c()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr)); err != nil {
			fail(fmt.Errorf("%s: %w", what, err))
		}
	}
	var registered, connected, ringing, answerConnect []time.Duration
	for r := range *warmup + *rounds {
		// The page's clock is the machine's: performance.timeOrigin is the
		// navigation's start in Unix ms.
		run("load the console", 20*time.Second, chromedp.Navigate(*base+"/"), chromedp.WaitVisible(chromedp.ID("calls")),
			chromedp.Evaluate[chromedp.Void](`window.bench = {};
				new MutationObserver(() => {
					const b = document.querySelector('.popup button.answer');
					if (b && !window.bench.ring) { window.bench.ring = performance.timeOrigin + performance.now(); b.click(); }
				}).observe(document.getElementById('popups'), { childList: true, subtree: true });
				window.bench.at = (name) => { const m = performance.getEntriesByName(name, 'mark')[0]; return m ? performance.timeOrigin + m.startTime : 0; };`))
		poll("the phone registers", `!!window.bench.at('phone:registered')`, 20*time.Second)
		invited := time.Now()
		done := make(chan *siptest.Call, 1)
		ctx, stop := context.WithTimeout(context.Background(), 20*time.Second)
		go func() {
			c, err := vpbx.Invite(ctx, *account, "79161234567", siptest.SDP("127.0.0.1:9"))
			if err != nil {
				fail(fmt.Errorf("round %d: invite: %w", r, err))
			}
			done <- c
		}()
		var times struct{ Origin, Ready, Ring, Connected float64 }
		poll("ring, answer, connect", `!!window.bench.at('pc:pc connected')`, 20*time.Second)
		c2, c2cancel := context.WithTimeout(b, 5*time.Second)
		times, err = chromedp.Run(c2, chromedp.Evaluate[struct{ Origin, Ready, Ring, Connected float64 }](
			`({Origin: performance.timeOrigin, Ready: window.bench.at('phone:registered'), Ring: window.bench.ring, Connected: window.bench.at('pc:pc connected')})`))
		c2cancel()
		if err != nil {
			fail(err)
		}
		call := <-done
		_ = call.Hangup(ctx)
		stop()
		run("the card goes", 10*time.Second, chromedp.WaitNotPresent(chromedp.CSS(".popup")))
		if r < *warmup+2 || r == *warmup+*rounds-1 {
			c3, c3cancel := context.WithTimeout(b, 5*time.Second)
			marks, _ := chromedp.Run(c3, chromedp.Evaluate[string](`[...performance.getEntriesByType('mark').map((m) => [m.name, m.startTime]),
				...performance.getEntriesByType('resource').map((r) => ['got ' + r.name.replace(location.origin, '') + (r.transferSize > 300 ? '' : ' (304)'), r.responseEnd]),
				...['domInteractive', 'domContentLoadedEventEnd'].map((k) => [k, performance.getEntriesByType('navigation')[0][k]])]
				.sort((a, b) => a[1] - b[1]).map(([n, t]) => n + ' ' + t.toFixed(1)).join(', ')`))
			c3cancel()
			fmt.Printf("page %2d marks (ms since the page's start): %s\n", r+1, marks)
		}
		ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
		reg, conn := ms(times.Ready-times.Origin), ms(times.Connected-times.Origin)
		ring := ms(times.Ring - float64(invited.UnixNano())/1e6)
		ans := ms(times.Connected - times.Ring)
		kind := "round"
		if r < *warmup {
			kind = "warm-up"
		} else {
			registered, connected, ringing, answerConnect = append(registered, reg), append(connected, conn), append(ringing, ring), append(answerConnect, ans)
		}
		fmt.Printf("%s %2d: load → registered %6.1f ms, load → ICE connected %6.1f ms (the call placed once registered), INVITE → card rings %5.1f ms, answer → connected %5.1f ms\n",
			kind, r+1, msf(reg), msf(conn), msf(ring), msf(ans))
	}
	for _, s := range []struct {
		name string
		d    []time.Duration
	}{{"page load → registered", registered}, {"page load → ICE connected", connected}, {"INVITE → card rings", ringing}, {"answer → ICE connected", answerConnect}} {
		sort.Slice(s.d, func(i, j int) bool { return s.d[i] < s.d[j] })
		fmt.Printf("%-26s p50 %6.1f ms  p99 %6.1f ms  (%d rounds)\n", s.name, msf(s.d[len(s.d)/2]), msf(s.d[min(len(s.d)-1, len(s.d)*99/100)]), len(s.d))
	}
}

// pageMarks marks, from the page's start, the browser phone's WebSocket
// (opened, and the first line of each SIP message either way), the
// microphone's opening and the peer connection's steps and states.
const pageMarks = `(() => {
	const P = RTCPeerConnection.prototype, mark = (n) => performance.mark('pc:' + n);
	for (const m of ['setLocalDescription', 'setRemoteDescription', 'createAnswer', 'addTrack']) {
		const f = P[m];
		P[m] = function (...a) {
			if (!this.benchWatched) {
				this.benchWatched = true;
				this.addEventListener('iceconnectionstatechange', () => mark('ice ' + this.iceConnectionState));
				this.addEventListener('connectionstatechange', () => mark('pc ' + this.connectionState));
			}
			mark(m);
			const r = f.apply(this, a);
			return r && r.then ? r.finally(() => mark(m + ' done')) : r;
		};
	}
	const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
	navigator.mediaDevices.getUserMedia = (c) => { mark('getUserMedia'); return gum(c).finally(() => mark('getUserMedia done')); };
	const W = window.WebSocket, first = (d) => typeof d === 'string' ? d.slice(0, d.indexOf('\r')).replace(/ sip:\S+| SIP\/2.0/g, '') : '?';
	window.WebSocket = function (...a) {
		const ws = new W(...a);
		performance.mark('ws:new');
		ws.addEventListener('open', () => performance.mark('ws:open'));
		ws.addEventListener('message', (e) => performance.mark('ws:<' + first(e.data)));
		const send = ws.send.bind(ws);
		ws.send = (d) => { performance.mark('ws:>' + first(d)); return send(d); };
		return ws;
	};
	window.WebSocket.prototype = W.prototype;
	Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
})();`

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fail(err error) {
	fmt.Fprintln(os.Stderr, "pageload:", err)
	os.Exit(1)
}
