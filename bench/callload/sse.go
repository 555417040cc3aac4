package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// fanout measures how long a ringing event takes to reach every one of n
// live-event subscribers: from the moment the VPBX sent the INVITE for an
// account to the moment the last subscriber read the event for it.
type fanout struct {
	n    int
	mu   sync.Mutex
	sent map[string]time.Time // account -> INVITE sent
	got  map[string]*arrival
}

type arrival struct {
	n    int
	last time.Time
}

// startFanout connects n subscribers to callgate's /api/v1/events.
func startFanout(ctx context.Context, n int, httpAddr, token string) *fanout {
	f := &fanout{n: n, sent: map[string]time.Time{}, got: map[string]*arrival{}}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0}}
	var ready sync.WaitGroup
	ready.Add(n)
	for range n {
		go f.subscribe(ctx, client, "http://"+httpAddr+"/api/v1/events", token, &ready)
	}
	done := make(chan struct{})
	go func() { ready.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		fmt.Fprintln(os.Stderr, "event subscribers did not all connect")
		os.Exit(1)
	}
	return f
}

func (f *fanout) subscribe(ctx context.Context, client *http.Client, url, token string, ready *sync.WaitGroup) {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := client.Do(req)
	if err != nil || res.StatusCode != 200 {
		fmt.Fprintf(os.Stderr, "subscribe: %v %v\n", err, res)
		os.Exit(1)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	once := sync.OnceFunc(ready.Done)
	defer once()
	kind := ""
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == ": connected":
			once()
		case strings.HasPrefix(l, "event: "):
			kind = l[7:]
		case strings.HasPrefix(l, "data: ") && kind == "ringing":
			now := time.Now()
			var d struct {
				Account string `json:"account"`
			}
			if json.Unmarshal([]byte(l[6:]), &d) == nil {
				f.mu.Lock()
				a := f.got[d.Account]
				if a == nil {
					a = &arrival{}
					f.got[d.Account] = a
				}
				a.n++
				if now.After(a.last) {
					a.last = now
				}
				f.mu.Unlock()
			}
		}
	}
}

// invited notes when the INVITE for account was sent.
func (f *fanout) invited(account string, at time.Time) {
	f.mu.Lock()
	f.sent[account] = at
	f.mu.Unlock()
}

// report prints the INVITE → last subscriber delay, p50 and p99.
func (f *fanout) report() {
	f.mu.Lock()
	defer f.mu.Unlock()
	var d []time.Duration
	incomplete := 0
	for acct, at := range f.sent {
		a := f.got[acct]
		if a == nil || a.n < f.n {
			incomplete++
			continue
		}
		d = append(d, a.last.Sub(at))
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	p := func(q float64) time.Duration {
		if len(d) == 0 {
			return 0
		}
		return d[min(len(d)-1, int(q*float64(len(d))))]
	}
	fmt.Printf("events: subscribers=%d calls=%d incomplete=%d invite_to_last_subscriber_p50=%s p99=%s\n", f.n, len(f.sent), incomplete, p(0.5), p(0.99))
}
