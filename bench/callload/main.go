// Command callload loads a running callgate with calls: it plays the VPBX
// (accepting callgate's registrations and sending INVITEs to its accounts)
// and the office phones (registered extensions that answer at once), then
// sends G.711 RTP both ways through callgate's relay for the hold time and
// reports setup delay, packet loss, relay latency, callgate's CPU per
// call-second and memory per call. Every loop is bounded by -calls and
// -hold.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"callgate/sip/siptest"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// endpoint is one RTP stream's state. All streams of one side share a
// socket (the relay latches per session, so a shared source address is
// fine) and are told apart by SSRC, which the relay passes through; that
// lets the load generator send and receive in batches (sendmmsg/recvmmsg)
// and stay light enough not to be the limit.
type endpoint struct {
	remote atomic.Pointer[netip.AddrPort]
	seq    uint16
	ts     uint32
	ssrc   uint32
	got    atomic.Uint64
	first  atomic.Uint32 // first seq seen +1
	maxSeq atomic.Uint32
	// last packet's arrival and latency, the longest gaps around a reload
	// and the largest rise of latency from one packet to the next (Unix
	// ns; the side's reader alone writes them, see reloader.arrived).
	last, lastLat, gapBefore, gapAfter, riseBefore, riseAfter int64
}

func (e *endpoint) setRemote(a netip.AddrPort) { e.remote.Store(&a) }

var (
	latMu sync.Mutex
	lats  []time.Duration
)

func main() {
	target := flag.String("target", "127.0.0.1:5080", "callgate SIP address")
	listen := flag.String("listen", "127.0.0.1:5070", "address of the VPBX stand-in (callgate's upstream.registrar)")
	calls := flag.Int("calls", 100, "concurrent calls")
	rate := flag.Int("rate", 50, "new calls per second")
	hold := flag.Duration("hold", 60*time.Second, "how long every call is held")
	first := flag.Int("first", 30000, "first extension; account i is acc<first+i>")
	password := flag.String("password", "Phone101pass", "extensions' password")
	pid := flag.Int("pid", 0, "callgate's pid, for CPU and memory")
	sse := flag.Int("sse", 0, "live-event subscribers to connect to callgate's /api/v1/events (0: none)")
	httpAddr := flag.String("http", "127.0.0.1:18091", "callgate's HTTP API address, for -sse")
	token := flag.String("token", "", "admin API token, for -sse and -c2c")
	retailAddr := flag.String("retailcrm", "", "run a RetailCRM stand-in at this address and report INVITE → popup times")
	megaplanAddr := flag.String("megaplan", "", "run a Megaplan stand-in at this address and report INVITE → popup times")
	setupsFile := flag.String("setups", "", "write each call's INVITE time (Unix ns) and setup time (ns) to this file, one call a line")
	clickToCall := flag.Bool("c2c", false, "place -calls click-to-calls through the API instead of inbound calls, report setup times and exit")
	reloadFile := flag.String("reload", "", "halfway through the hold, put this file in place of -config and send callgate (-pid) SIGHUP; report dropped calls and RTP gaps")
	configPath := flag.String("config", "", "callgate's configuration file, for -reload")
	dry := flag.Bool("reload-dry", false, "with -reload: measure the same spans but do not reload (a control run)")
	flag.Parse()
	if *reloadFile != "" {
		rl = &reloader{next: *reloadFile, path: *configPath, pid: *pid, dry: *dry}
	}
	if *clickToCall {
		c2c = newC2C() // before the SIP handlers start, which read it
	}
	log := slog.New(slog.DiscardHandler)

	// VPBX stand-in: accepts callgate's REGISTERs, places calls.
	vua, _ := sipgo.NewUA(sipgo.WithUserAgent("callload-vpbx"))
	vsrv, _ := sipgo.NewServer(vua, sipgo.WithServerLogger(log))
	vsrv.OnRegister(func(req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		if c := req.Contact(); c != nil {
			res.AppendHeader(sip.NewHeader("Contact", "<"+c.Address.String()+">;expires=3600"))
		}
		_ = tx.Respond(res)
	})
	vpc, err := net.ListenPacket("udp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	host, port, _ := sip.ParseAddr(vpc.LocalAddr().String())
	vcli, _ := sipgo.NewClient(vua, sipgo.WithClientHostname(host), sipgo.WithClientPort(port), sipgo.WithClientConnectionAddr(vpc.LocalAddr().String()))
	vdcc := sipgo.NewDialogClientCache(vcli, sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "vpbx", Host: host, Port: port}})
	vdsc := sipgo.NewDialogServerCache(vcli, sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "vpbx", Host: host, Port: port}})
	vsrv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		rl.bye()
		if vdcc.ReadBye(req, tx) != nil {
			_ = vdsc.ReadBye(req, tx)
		}
	})
	// Click-to-call's client legs: note the arrival and answer.
	vsrv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		if c2c == nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 403, "Forbidden", nil))
			return
		}
		c2c.note(c2c.dialled, extensionOf(req.Recipient.User, *first))
		d, err := vdsc.ReadInvite(req, tx)
		if err != nil {
			return
		}
		_ = d.Respond(200, "OK", siptest.SDP("127.0.0.1:9"), sip.NewHeader("Content-Type", "application/sdp"))
	})
	vsrv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { _ = vdsc.ReadAck(req, tx) })
	go vsrv.ServeUDP(vpc)

	// Phones: one UA answering for every extension.
	pua, _ := sipgo.NewUA(sipgo.WithUserAgent("callload-phone"))
	psrv, _ := sipgo.NewServer(pua, sipgo.WithServerLogger(log))
	ppc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	phost, pport, _ := sip.ParseAddr(ppc.LocalAddr().String())
	pcli, _ := sipgo.NewClient(pua, sipgo.WithClientHostname(phost), sipgo.WithClientPort(pport), sipgo.WithClientConnectionAddr(ppc.LocalAddr().String()))
	pdsc := sipgo.NewDialogServerCache(pcli, sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "phone", Host: phost, Port: pport}})
	outSide, phoneSide := newSide(netip.MustParseAddr("127.0.0.2")), newSide(netip.MustParseAddr("127.0.0.3"))
	phoneEP := map[string]*endpoint{}
	var epMu sync.Mutex
	psrv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		if c2c != nil {
			c2c.note(c2c.rang, req.Recipient.User)
		}
		d, err := pdsc.ReadInvite(req, tx)
		if err != nil {
			return
		}
		epMu.Lock()
		ep := phoneEP[req.Recipient.User]
		epMu.Unlock()
		if ep == nil {
			_ = d.Respond(404, "Not Found", nil)
			return
		}
		if a, err := siptest.MediaAddr(req.Body()); err == nil {
			ep.setRemote(a)
		}
		if c2c != nil {
			c2c.note(c2c.answered, req.Recipient.User)
		}
		_ = d.Respond(200, "OK", siptest.SDP(phoneSide.addr()), sip.NewHeader("Content-Type", "application/sdp"))
	})
	psrv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { _ = pdsc.ReadAck(req, tx) })
	psrv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) { rl.bye(); _ = pdsc.ReadBye(req, tx) })
	psrv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	go psrv.ServeUDP(ppc)
	time.Sleep(200 * time.Millisecond)

	// Register the extensions.
	thost, tport, _ := sip.ParseAddr(*target)
	for i := 0; i < *calls; i++ {
		ext := strconv.Itoa(*first + i)
		req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: thost, Port: tport})
		aor := sip.Uri{Scheme: "sip", User: ext, Host: thost}
		from := &sip.FromHeader{Address: aor}
		from.Params.Add("tag", sip.GenerateTagN(8))
		req.AppendHeader(from)
		req.AppendHeader(&sip.ToHeader{Address: aor})
		req.AppendHeader(sip.NewHeader("Contact", "<sip:"+ext+"@"+ppc.LocalAddr().String()+">"))
		req.AppendHeader(sip.NewHeader("Expires", "3600"))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := pcli.Do(ctx, req)
		if err == nil && res.StatusCode == 401 {
			res, err = pcli.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: ext, Password: *password})
		}
		cancel()
		if err != nil || res.StatusCode != 200 {
			fmt.Fprintf(os.Stderr, "register %s failed: %v %v\n", ext, res, err)
			os.Exit(1)
		}
		epMu.Lock()
		phoneEP[ext] = &endpoint{ssrc: uint32(2*i + 2)}
		epMu.Unlock()
	}
	if c2c != nil {
		c2c.run(*httpAddr, *token, *calls, *rate, *first)
		c2c.report()
		return
	}
	rssBefore := rss(*pid)
	cpu0 := cpuTicks(*pid)

	// Place the calls at the given rate.
	type placed struct {
		sess  *sipgo.DialogClientSession
		out   *endpoint
		phone *endpoint
		setup time.Duration
		start time.Time
	}
	var (
		mu     sync.Mutex
		all    []placed
		failed atomic.Int64
		wg     sync.WaitGroup
	)
	var fan *fanout
	if *sse > 0 {
		sseCtx, stopSSE := context.WithCancel(context.Background())
		defer stopSSE()
		fan = startFanout(sseCtx, *sse, *httpAddr, *token)
	}
	var pops *popups
	if *retailAddr != "" || *megaplanAddr != "" {
		pops = startPopups(*retailAddr, *megaplanAddr)
		time.Sleep(2 * time.Second) // callgate's first CRM requests retry within a second
	}
	placeStart := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(*rate))
	for i := 0; i < *calls; i++ {
		<-tick.C
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			acct := "acc" + strconv.Itoa(*first+i)
			out := &endpoint{ssrc: uint32(2*i + 1)}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			start := time.Now()
			if fan != nil {
				fan.invited(acct, start)
			}
			if pops != nil {
				pops.invited(strconv.Itoa(*first+i), start)
			}
			s, err := vdcc.Invite(ctx, sip.Uri{Scheme: "sip", User: acct, Host: thost, Port: tport}, siptest.SDP(outSide.addr()), sip.NewHeader("Content-Type", "application/sdp"))
			if err == nil {
				err = s.WaitAnswer(ctx, sipgo.AnswerOptions{})
			}
			if err != nil {
				failed.Add(1)
				return
			}
			setup := time.Since(start)
			_ = s.Ack(ctx)
			if a, err := siptest.MediaAddr(s.InviteResponse.Body()); err == nil {
				out.setRemote(a)
			}
			epMu.Lock()
			ph := phoneEP[strconv.Itoa(*first+i)]
			epMu.Unlock()
			mu.Lock()
			all = append(all, placed{s, out, ph, setup, start})
			mu.Unlock()
		}(i)
	}
	tick.Stop()
	wg.Wait()
	setupDone := time.Now()
	if *setupsFile != "" {
		var b strings.Builder
		for _, p := range all {
			fmt.Fprintf(&b, "%d %d\n", p.start.UnixNano(), p.setup.Nanoseconds())
		}
		if err := os.WriteFile(*setupsFile, []byte(b.String()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}

	// Media: every endpoint sends 20 ms packets at its own phase.
	var eps []*endpoint
	var sides []*side
	bySSRC := map[uint32]*endpoint{}
	for _, p := range all {
		eps = append(eps, p.out, p.phone)
		sides = append(sides, outSide, phoneSide)
		bySSRC[p.out.ssrc], bySSRC[p.phone.ssrc] = p.out, p.phone
	}
	outSide.done.Add(1)
	phoneSide.done.Add(1)
	go outSide.read(bySSRC)
	go phoneSide.read(bySSRC)
	stop := make(chan struct{})
	var sent atomic.Uint64
	go func() {
		bufs := make([][]byte, len(eps))
		for i := range bufs {
			bufs[i] = make([]byte, 172)
			bufs[i][0], bufs[i][1] = 0x80, 8
		}
		// 200 slots of 100 µs, so each slot's burst is about ten packets
		// per side, as from independent phones; a late tick sends every
		// slot that is due. Packets are stamped in chunks of 8 right before
		// the chunk's sendmmsg, so the stamp is not older than the send.
		const slots, slotLen, chunk = 200, 100 * time.Microsecond, 8
		batch := map[*side][]outPkt{}
		t := time.NewTicker(slotLen)
		defer t.Stop()
		start := time.Now()
		next := 0
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			due := int(time.Since(start) / slotLen)
			for ; next <= due; next++ {
				slot := next % slots
				for _, sd := range []*side{outSide, phoneSide} {
					batch[sd] = batch[sd][:0]
				}
				for i := slot; i < len(eps); i += slots {
					e := eps[i]
					r := e.remote.Load()
					if r == nil {
						continue
					}
					e.seq++
					e.ts += 160
					pkt := bufs[i]
					binary.BigEndian.PutUint16(pkt[2:], e.seq)
					binary.BigEndian.PutUint32(pkt[4:], e.ts)
					binary.BigEndian.PutUint32(pkt[8:], e.ssrc)
					batch[sides[i]] = append(batch[sides[i]], outPkt{buf: pkt, to: *r})
				}
				for sd, msgs := range batch {
					for len(msgs) > 0 {
						c := msgs[:min(chunk, len(msgs))]
						now := uint64(time.Now().UnixNano())
						for _, m := range c {
							binary.BigEndian.PutUint64(m.buf[12:], now)
						}
						n := sd.send(c)
						if n == 0 {
							break
						}
						sent.Add(uint64(n))
						msgs = msgs[n:]
					}
				}
			}
		}
	}()
	if rl != nil {
		rl.schedule(*hold/2, min(2*time.Second, *hold/4))
	}
	// Measure callgate over the middle of the hold, when every stream runs.
	time.Sleep(*hold / 4)
	cpuA, tA, encA := cpuTicks(*pid), time.Now(), encoderCPU(*httpAddr, *token)
	time.Sleep(*hold / 2)
	cpuB, tB, encB := cpuTicks(*pid), time.Now(), encoderCPU(*httpAddr, *token)
	rssDuring := rss(*pid)
	time.Sleep(*hold / 4)
	close(stop)
	time.Sleep(300 * time.Millisecond) // last packets in flight

	var got, expected uint64
	for _, e := range eps {
		got += e.got.Load()
		if f := e.first.Load(); f > 0 {
			expected += uint64(e.maxSeq.Load()) - uint64(f-1) + 1
		}
	}
	if rl != nil {
		rl.ending.Store(true)
	}
	for _, p := range all {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = p.sess.Bye(ctx)
		cancel()
	}
	outSide.close()
	phoneSide.close()
	if rl != nil {
		rl.report(eps)
	}
	var setups []time.Duration
	for _, p := range all {
		setups = append(setups, p.setup)
	}
	pct := func(d []time.Duration, p float64) time.Duration {
		if len(d) == 0 {
			return 0
		}
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[int(float64(len(d)-1)*p)]
	}
	latMu.Lock()
	l := append([]time.Duration(nil), lats...)
	latMu.Unlock()
	ok := len(all)
	loss := 0.0
	if expected > 0 {
		loss = 100 * float64(expected-min(got, expected)) / float64(expected)
	}
	tick2 := 100.0 // CLK_TCK on Linux
	cpuPerCallSec := 0.0
	if ok > 0 && tB.After(tA) {
		cpuPerCallSec = (float64(cpuB-cpuA) / tick2) * 1000 / (float64(ok) * tB.Sub(tA).Seconds())
	}
	fmt.Printf("calls=%d established=%d failed=%d setup_rate=%.0f/s setup_p50=%s setup_p99=%s\n",
		*calls, ok, failed.Load(), float64(ok)/setupDone.Sub(placeStart).Seconds(), pct(setups, 0.5), pct(setups, 0.99))
	if fan != nil {
		fan.report()
	}
	if pops != nil {
		pops.wait(10 * time.Second)
		pops.report()
	}
	fmt.Printf("rtp: sent=%d received=%d expected=%d loss=%.3f%% relay_latency_p50=%s p99=%s\n", sent.Load(), got, expected, loss, pct(l, 0.5), pct(l, 0.99))
	if *pid > 0 {
		fmt.Printf("callgate: cpu_per_call_second=%.3fms (whole run %.1fs cpu) rss_per_call=%.1fKiB\n",
			cpuPerCallSec, float64(cpuB-cpu0)/tick2, float64(rssDuring-rssBefore)/1024/float64(max(ok, 1)))
		if enc := encB - encA; enc > 0 && ok > 0 {
			relay := (float64(cpuB-cpuA)/tick2 - enc) * 1000 / (float64(ok) * tB.Sub(tA).Seconds())
			fmt.Printf("callgate: encoders %.1fs cpu over the measured window; without them cpu_per_call_second=%.3fms\n", enc, relay)
		}
	}
}

// encoderCPU is callgate's callgate_recording_encode_cpu_seconds_total
// (0 when it cannot be read): the encoders' CPU, counted per thread.
func encoderCPU(addr, token string) float64 {
	req, err := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
	if err != nil || token == "" {
		return 0
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "callgate_recording_encode_cpu_seconds_total "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

func cpuTicks(pid int) uint64 {
	if pid == 0 {
		return 0
	}
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
	if pid == 0 {
		return 0
	}
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
