// Command webrtcload compares callgate's cost of a browser phone's call
// (WebRTC: ICE, DTLS-SRTP, the bridge to the relay) with a desk phone's
// (plain RTP), in one run against one running callgate: it plays the VPBX
// and the phones, holds -calls concurrent inbound calls with a tone both
// ways for -hold in each mode (alternating, -rounds times), and reports
// callgate's CPU per call-second and memory per call for each. The browser
// phones register over callgate's /sip and carry their media with pion
// peers (media/webrtc/webrtctest), the desk phones over UDP with RTP
// peers. Every loop is bounded by -calls, -rounds and -hold.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"callgate/media/g711"
	"callgate/media/rtptest"
	"callgate/media/webrtc/webrtctest"
	"callgate/sip/siptest"

	"github.com/emiago/sipgo/sip"
)

func main() {
	sipAddr := flag.String("sip", "127.0.0.1:5080", "callgate's SIP address (desk phones)")
	httpAddr := flag.String("http", "127.0.0.1:18091", "callgate's HTTP address (browser phones, /sip)")
	vpbxAddr := flag.String("listen", "127.0.0.1:5071", "the VPBX stand-in's address (callgate's upstream.registrar)")
	calls := flag.Int("calls", 100, "concurrent calls")
	rate := flag.Int("rate", 20, "calls set up per second")
	hold := flag.Duration("hold", 20*time.Second, "how long the calls are measured once all are up")
	rounds := flag.Int("rounds", 2, "rounds of each mode, alternating (rtp, webrtc, rtp, webrtc...)")
	first := flag.Int("first", 30000, "first extension; account i is acc<first+i>")
	pid := flag.Int("pid", 0, "callgate's pid, for CPU and memory")
	token := flag.String("token", "", "an admin API token: Go heap and goroutines from /metrics")
	flag.Parse()
	// sipgo's own transport warnings (phones closing their connections
	// between rounds) are not what is measured.
	sip.SetDefaultLogger(slog.New(slog.DiscardHandler))
	if *pid == 0 {
		fmt.Fprintln(os.Stderr, "webrtcload: -pid is needed")
		os.Exit(2)
	}
	accounts := map[string]string{}
	for i := range *calls {
		accounts[fmt.Sprintf("acc%d", *first+i)] = "Secret123"
	}
	vpbx, err := siptest.NewVPBX(siptest.VPBXConfig{Listen: *vpbxAddr, Domain: "vpbx.bench", Accounts: accounts, Grant: 3600})
	if err != nil {
		fail(err)
	}
	defer vpbx.Close()
	waitRegistered(vpbx, *calls)
	fmt.Printf("%d concurrent calls, %d rounds of each mode, %s each\n", *calls, *rounds, *hold)
	results := map[string][]result{}
	for r := range 2 * *rounds {
		mode := []string{"rtp", "webrtc"}[r%2]
		res, err := run(mode, vpbx, *sipAddr, *httpAddr, *token, *calls, *rate, *first, *hold, *pid)
		if err != nil {
			fail(fmt.Errorf("%s round %d: %w", mode, r/2+1, err))
		}
		fmt.Printf("%-7s round %d: %.3f ms CPU per call-second, per call %.1f KiB RSS, %.1f KiB Go heap, %.1f goroutines; setup p50 %s p99 %s; %d/%d calls with audio both ways\n",
			mode, r/2+1, res.cpuPerCallSecond*1000, float64(res.rssPerCall)/1024, res.heapPerCall/1024, res.goroutinesPerCall,
			res.setupP50.Round(100*time.Microsecond), res.setupP99.Round(100*time.Microsecond), res.audio, *calls)
		results[mode] = append(results[mode], res)
		settle(*httpAddr, *token) // the next round's idle figures start from a quiet callgate
	}
	for _, mode := range []string{"rtp", "webrtc"} {
		lo, hi := 1e9, 0.0
		for _, r := range results[mode] {
			lo, hi = min(lo, r.cpuPerCallSecond*1000), max(hi, r.cpuPerCallSecond*1000)
		}
		fmt.Printf("%-7s CPU per call-second %.3f–%.3f ms\n", mode, lo, hi)
	}
}

type result struct {
	cpuPerCallSecond   float64
	rssPerCall         int64
	heapPerCall        float64
	goroutinesPerCall  float64
	setupP50, setupP99 time.Duration
	audio              int
}

// call is one call's parties: the outside party's RTP at the VPBX, the
// employee's phone and its media (an RTP peer or a pion browser).
type call struct {
	outside *rtptest.Peer
	phone   *siptest.Phone
	rtp     *rtptest.Peer
	browser *webrtctest.Browser
	vpbx    *siptest.Call
	setup   time.Duration
}

func (c *call) close() {
	if c.vpbx != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = c.vpbx.Hangup(ctx)
		cancel()
	}
	if c.browser != nil {
		c.browser.Close()
	}
	if c.rtp != nil {
		c.rtp.Close()
	}
	if c.outside != nil {
		c.outside.Close()
	}
	if c.phone != nil {
		c.phone.Close()
	}
}

func run(mode string, vpbx *siptest.VPBX, sipAddr, httpAddr, token string, n, rate, first int, hold time.Duration, pid int) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), hold+time.Duration(n/rate+60)*time.Second)
	defer cancel()
	calls := make([]*call, n)
	defer func() {
		var wg sync.WaitGroup
		for _, c := range calls {
			if c != nil {
				wg.Add(1)
				go func() { defer wg.Done(); c.close() }()
			}
		}
		wg.Wait()
	}()
	// Register every phone first: the registrations are not what is measured.
	for i := range n {
		cfg := siptest.PhoneConfig{User: strconv.Itoa(first + i), Password: "Phone101pass", Server: sipAddr}
		if mode == "webrtc" {
			cfg.Transport, cfg.Server, cfg.Origin = "ws", httpAddr, "http://"+httpAddr
		}
		p, err := siptest.NewPhone(cfg)
		if err != nil {
			return result{}, err
		}
		calls[i] = &call{phone: p}
		if res, err := p.Register(ctx, 3600); err != nil || res.StatusCode != 200 {
			return result{}, fmt.Errorf("register %s: %v %v", cfg.User, res, err)
		}
	}
	time.Sleep(time.Second)
	idleRSS := rss(pid)
	idleHeap, idleG := metric(httpAddr, token, "go_memstats_heap_inuse_bytes"), metric(httpAddr, token, "go_goroutines")
	var failed atomic.Int32
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(rate))
	for i, c := range calls {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.place(ctx, mode, vpbx, fmt.Sprintf("acc%d", first+i)); err != nil {
				failed.Add(1)
				fmt.Fprintf(os.Stderr, "call %d: %v\n", i, err)
			}
		}()
	}
	tick.Stop()
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return result{}, fmt.Errorf("%d calls failed", f)
	}
	time.Sleep(2 * time.Second) // every leg connected and talking
	cpu0, t0 := cpuTicks(pid), time.Now()
	time.Sleep(hold)
	cpu1, t1 := cpuTicks(pid), time.Now()
	res := result{cpuPerCallSecond: float64(cpu1-cpu0) / 100 / (float64(n) * t1.Sub(t0).Seconds()), rssPerCall: (rss(pid) - idleRSS) / int64(n),
		heapPerCall: (metric(httpAddr, token, "go_memstats_heap_inuse_bytes") - idleHeap) / float64(n), goroutinesPerCall: (metric(httpAddr, token, "go_goroutines") - idleG) / float64(n)}
	var setups []time.Duration
	for _, c := range calls {
		setups = append(setups, c.setup)
		heard := rtptest.Has(c.outside.Heard(400*time.Millisecond), 440)
		if c.browser != nil {
			heard = heard && rtptest.Has(c.browser.Heard(400*time.Millisecond), 1000)
		} else {
			heard = heard && rtptest.Has(c.rtp.Heard(400*time.Millisecond), 1000)
		}
		if heard {
			res.audio++
		}
	}
	sort.Slice(setups, func(i, j int) bool { return setups[i] < setups[j] })
	res.setupP50, res.setupP99 = setups[len(setups)/2], setups[min(len(setups)-1, len(setups)*99/100)]
	return res, nil
}

// place has the VPBX call account, lets the phone answer and starts the
// tones: 1000 Hz from the outside, 440 Hz from the employee.
func (c *call) place(ctx context.Context, mode string, vpbx *siptest.VPBX, account string) error {
	var err error
	if c.outside, err = rtptest.NewPeer(1000, g711.PCMA); err != nil {
		return err
	}
	start := time.Now()
	answered := make(chan error, 1)
	go func() {
		var err error
		select {
		case in := <-c.phone.Calls:
			var sdp []byte
			if mode == "webrtc" {
				if c.browser, err = webrtctest.NewBrowser(440, webrtctest.Options{Codecs: []string{"PCMA", "PCMU"}}); err == nil {
					sdp, err = c.browser.Accept(in.Request.Body())
				}
			} else if c.rtp, err = rtptest.NewPeer(440, g711.PCMA); err == nil {
				sdp = siptest.SDP(c.rtp.Addr().String())
				to, _ := siptest.MediaAddr(in.Request.Body())
				c.rtp.SendTo(to)
			}
			if err == nil {
				_, err = in.Answer(ctx, sdp)
			}
			answered <- err
		case <-ctx.Done():
			answered <- ctx.Err()
		}
	}()
	v, err := vpbx.Invite(ctx, account, "79161234567", siptest.SDP(c.outside.Addr().String()))
	if err != nil {
		return fmt.Errorf("invite: %w", err)
	}
	c.vpbx = v
	if err := <-answered; err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	c.setup = time.Since(start)
	to, _ := siptest.MediaAddr(v.Remote)
	c.outside.SendTo(to)
	return nil
}

func waitRegistered(v *siptest.VPBX, n int) {
	deadline := time.After(60 * time.Second)
	users := map[string]bool{}
	for len(users) < n {
		select {
		case r := <-v.Registrations:
			if r.Status == 200 {
				users[r.User] = true
			}
		case <-deadline:
			fail(fmt.Errorf("callgate registered %d of its %d accounts", len(users), n))
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "webrtcload:", err)
	os.Exit(1)
}

func cpuTicks(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseUint(f[11], 10, 64)
	k, _ := strconv.ParseUint(f[12], 10, 64)
	return u + k
}

func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// metric reads one unlabelled value from callgate's /metrics (0 without a
// token or on any error).
func metric(httpAddr, token, name string) float64 {
	if token == "" {
		return 0
	}
	req, _ := http.NewRequest("GET", "http://"+httpAddr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// settle waits (at most 30 s) until callgate has no call and no WebRTC leg
// left and its goroutines stop falling.
func settle(httpAddr, token string) {
	deadline := time.Now().Add(30 * time.Second)
	last := -1.0
	for time.Now().Before(deadline) {
		time.Sleep(time.Second)
		g := metric(httpAddr, token, "go_goroutines")
		if metric(httpAddr, token, "callgate_calls_active") == 0 && metric(httpAddr, token, "callgate_webrtc_legs") == 0 && g == last {
			return
		}
		last = g
	}
	fmt.Fprintln(os.Stderr, "webrtcload: callgate did not settle within 30 s")
}
