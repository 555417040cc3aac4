package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	"callgate/gateway/api/apitest"
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
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	for range n {
		ch, err := apitest.Subscribe(ctx, client, "http://"+httpAddr, token, "")
		if err != nil {
			fmt.Fprintln(os.Stderr, "subscribe:", err)
			os.Exit(1)
		}
		go f.read(ch)
	}
	return f
}

// read notes when each ringing event reached this subscriber.
func (f *fanout) read(ch <-chan apitest.Event) {
	for ev := range ch {
		if ev.Kind != "ringing" {
			continue
		}
		now := time.Now()
		account, _ := ev.Fields["account"].(string)
		f.mu.Lock()
		a := f.got[account]
		if a == nil {
			a = &arrival{}
			f.got[account] = a
		}
		a.n++
		if now.After(a.last) {
			a.last = now
		}
		f.mu.Unlock()
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
