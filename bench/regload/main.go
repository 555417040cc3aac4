// Command regload registers many distinct phones with a SIP registrar over
// UDP (REGISTER, 401, authorized REGISTER, 200) and reports the rate, the
// failures, per-request latency, and, given callgate's metrics URL, the
// memory callgate holds per registration.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	icdigest "github.com/icholy/digest"
)

func main() {
	target := flag.String("target", "127.0.0.1:5060", "registrar address")
	users := flag.Int("users", 10000, "distinct extensions to register")
	first := flag.Int("first", 20000, "first extension number")
	password := flag.String("password", "Phone101pass", "password of every extension")
	workers := flag.Int("workers", 32, "concurrent sockets")
	metrics := flag.String("metrics", "", "callgate /metrics URL for memory figures")
	bind := flag.String("bind", "127.0.0.1:0", "local address of the sockets (one worker when a port is given)")
	token := flag.String("token", "", "bearer token for -metrics")
	flag.Parse()
	if !strings.HasSuffix(*bind, ":0") {
		*workers = 1
	}

	before := scrape(*metrics, *token)
	var next, fails atomic.Int64
	lat := make([][]time.Duration, *workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c, err := net.ListenPacket("udp", *bind)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			defer c.Close()
			dst, _ := net.ResolveUDPAddr("udp", *target)
			buf := make([]byte, 4096)
			for {
				i := int(next.Add(1)) - 1
				if i >= *users {
					return
				}
				ext := strconv.Itoa(*first + i)
				if !register(c, dst, buf, ext, *password, *target, &lat[w]) {
					fails.Add(1)
				}
			}
		}(w)
	}
	wg.Wait()
	wall := time.Since(start)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	pct := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[int(float64(len(all)-1)*p)]
	}
	ok := int64(*users) - fails.Load()
	fmt.Printf("phones=%d ok=%d failed=%d wall=%.2fs rate=%.0f/s request_latency_p50=%s p99=%s\n",
		*users, ok, fails.Load(), wall.Seconds(), float64(ok)/wall.Seconds(), pct(0.5), pct(0.99))
	if *metrics != "" {
		time.Sleep(2 * time.Second) // let the batch writer settle before measuring
		after := scrape(*metrics, *token)
		fmt.Printf("registered_contacts=%.0f heap_inuse_delta_per_binding=%.0fB rss_delta_per_binding=%.0fB\n",
			after["callgate_registered_contacts"],
			(after["go_memstats_heap_inuse_bytes"]-before["go_memstats_heap_inuse_bytes"])/float64(ok),
			(after["process_resident_memory_bytes"]-before["process_resident_memory_bytes"])/float64(ok))
	}
	if fails.Load() > 0 {
		os.Exit(1)
	}
}

// register performs one digest registration; latencies of both requests are recorded.
func register(c net.PacketConn, dst net.Addr, buf []byte, ext, password, target string, lat *[]time.Duration) bool {
	local := c.LocalAddr().String()
	callID := ext + "-" + local
	msg := func(cseq int, auth string) []byte {
		var b strings.Builder
		fmt.Fprintf(&b, "REGISTER sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s%d;rport\r\n", target, local, callID, cseq)
		fmt.Fprintf(&b, "From: <sip:%s@%s>;tag=%s\r\nTo: <sip:%s@%s>\r\nCall-ID: %s\r\nCSeq: %d REGISTER\r\n", ext, target, ext, ext, target, callID, cseq)
		fmt.Fprintf(&b, "Contact: <sip:%s@%s>\r\nExpires: 3600\r\nMax-Forwards: 70\r\nUser-Agent: regload\r\n", ext, local)
		if auth != "" {
			fmt.Fprintf(&b, "Authorization: %s\r\n", auth)
		}
		b.WriteString("Content-Length: 0\r\n\r\n")
		return []byte(b.String())
	}
	roundtrip := func(m []byte) (string, bool) {
		t0 := time.Now()
		for try := 0; try < 3; try++ {
			c.WriteTo(m, dst)
			c.SetReadDeadline(time.Now().Add(time.Second))
			n, _, err := c.ReadFrom(buf)
			if err == nil {
				*lat = append(*lat, time.Since(t0))
				return string(buf[:n]), true
			}
		}
		return "", false
	}
	res, ok := roundtrip(msg(1, ""))
	if !ok || !strings.HasPrefix(res, "SIP/2.0 401") {
		return false
	}
	var chal string
	sc := bufio.NewScanner(strings.NewReader(res))
	for sc.Scan() {
		if v, found := strings.CutPrefix(sc.Text(), "WWW-Authenticate: "); found {
			chal = v
			break
		}
	}
	ch, err := icdigest.ParseChallenge(chal)
	if err != nil {
		return false
	}
	cred, err := icdigest.Digest(ch, icdigest.Options{Method: "REGISTER", URI: "sip:" + target, Username: ext, Password: password})
	if err != nil {
		return false
	}
	res, ok = roundtrip(msg(2, cred.String()))
	return ok && strings.HasPrefix(res, "SIP/2.0 200")
}

func scrape(url, token string) map[string]float64 {
	out := map[string]float64{}
	if url == "" {
		return out
	}
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return out
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && !strings.HasPrefix(f[0], "#") {
			v, _ := strconv.ParseFloat(f[1], 64)
			out[f[0]] = v
		}
	}
	return out
}
