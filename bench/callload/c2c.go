package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// c2cBench measures click-to-call setup through the API: request → the
// employee's phone rings, and the employee answers → the client's INVITE
// reaches the VPBX.
type c2cBench struct {
	mu        sync.Mutex
	requested map[string]time.Time // extension -> POST sent
	rang      map[string]time.Time
	answered  map[string]time.Time
	dialled   map[string]time.Time
	failed    int
	codes     map[string]int // why requests failed
}

var c2c *c2cBench

func newC2C() *c2cBench {
	return &c2cBench{codes: map[string]int{}, requested: map[string]time.Time{}, rang: map[string]time.Time{}, answered: map[string]time.Time{}, dialled: map[string]time.Time{}}
}

func (b *c2cBench) note(m map[string]time.Time, ext string) {
	now := time.Now()
	b.mu.Lock()
	if _, ok := m[ext]; !ok {
		m[ext] = now
	}
	b.mu.Unlock()
}

// clientNumber is the number click-to-call i dials; extensionOf undoes it.
func clientNumber(i int) string { return fmt.Sprintf("+7916%07d", i) }

func extensionOf(vpbxNumber string, first int) string {
	n, err := strconv.Atoi(strings.TrimPrefix(vpbxNumber, "7916"))
	if err != nil {
		return ""
	}
	return strconv.Itoa(first + n)
}

// run posts count click-to-calls at rate per second and waits for them.
func (b *c2cBench) run(httpAddr, token string, count, rate, first int) {
	// Every upstream account must be registered first (callgate is ready).
	for start := time.Now(); time.Since(start) < 60*time.Second; time.Sleep(200 * time.Millisecond) {
		res, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
	}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	for i := range count {
		<-tick.C
		ext := strconv.Itoa(first + i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"employee":"e%s","number":%q}`, ext, clientNumber(i))
			req, _ := http.NewRequest("POST", "http://"+httpAddr+"/api/v1/calls", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+token)
			b.note(b.requested, ext)
			res, err := http.DefaultClient.Do(req)
			if err != nil || res.StatusCode != 201 {
				why := fmt.Sprint(err)
				if res != nil {
					b, _ := io.ReadAll(res.Body)
					res.Body.Close()
					why = strconv.Itoa(res.StatusCode) + " " + string(b)
				}
				b.mu.Lock()
				b.failed++
				b.codes[why]++
				b.mu.Unlock()
				return
			}
			res.Body.Close()
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b.mu.Lock()
		done := len(b.dialled)+b.failed >= count
		b.mu.Unlock()
		if done {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (b *c2cBench) report() {
	b.mu.Lock()
	defer b.mu.Unlock()
	span := func(from, to map[string]time.Time) []time.Duration {
		var d []time.Duration
		for ext, t0 := range from {
			if t1, ok := to[ext]; ok {
				d = append(d, t1.Sub(t0))
			}
		}
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d
	}
	p := func(d []time.Duration, q float64) time.Duration {
		if len(d) == 0 {
			return 0
		}
		return d[min(len(d)-1, int(q*float64(len(d))))]
	}
	ring, dial := span(b.requested, b.rang), span(b.answered, b.dialled)
	fmt.Printf("click-to-call: requested=%d failed=%d rang=%d dialled=%d request_to_ring_p50=%s p99=%s answer_to_client_invite_p50=%s p99=%s\n",
		len(b.requested), b.failed, len(ring), len(dial), p(ring, 0.5), p(ring, 0.99), p(dial, 0.5), p(dial, 0.99))
	for why, n := range b.codes {
		fmt.Printf("  failed %d× %s\n", n, strings.TrimSpace(why))
	}
	if len(dial) == 0 {
		os.Exit(1)
	}
}
