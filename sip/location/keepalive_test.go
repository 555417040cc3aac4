package location

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakePhones answers OPTIONS as the test says and records what was sent.
type fakePhones struct {
	mu     sync.Mutex
	sent   []Binding
	answer func(ctx context.Context, b Binding) (int, error)
}

func (f *fakePhones) SendOptions(ctx context.Context, b Binding) (int, error) {
	f.mu.Lock()
	f.sent = append(f.sent, b)
	f.mu.Unlock()
	if f.answer == nil {
		return 200, nil
	}
	return f.answer(ctx, b)
}

func (f *fakePhones) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sent)
}

func TestKeepalivePingsAtOnceThenEveryInterval(t *testing.T) {
	tb := New()
	now := time.Now()
	b := Binding{AOR: "101", Contact: "sip:101@10.0.0.5:5060", Source: "203.0.113.7:40123", Transport: "udp", Local: "192.168.1.1:5060",
		Expires: now.Add(time.Hour), Since: now}
	tb.Modify("101", now, func([]Binding) ([]Binding, error) { return []Binding{b}, nil })
	register(t, tb, "102", "sip:102@x", now.Add(-time.Second+time.Hour))
	tb.Modify("103", now, func([]Binding) ([]Binding, error) {
		return []Binding{bind("103", "sip:103@x", now.Add(-time.Minute))}, nil
	})
	phones := &fakePhones{}
	k := NewKeepalive(tb, phones, 150*time.Millisecond, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	start := time.Now()
	go func() { k.Run(ctx); close(done) }()
	eventually(t, "the first round", func() bool { return phones.count() >= 2 })
	eventually(t, "the second round", func() bool { return phones.count() >= 4 })
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("second round after %v, before the interval", d)
	}
	cancel()
	<-done
	phones.mu.Lock()
	defer phones.mu.Unlock()
	seen := map[string]Binding{}
	for _, s := range phones.sent {
		seen[s.AOR] = s
	}
	if len(seen) != 2 || seen["101"] != b {
		t.Fatalf("pinged %v; want 101 at its source and 102, not the expired 103", seen)
	}
}

func TestKeepaliveOffSendsNothing(t *testing.T) {
	tb := New()
	register(t, tb, "101", "sip:101@x", time.Now().Add(time.Hour))
	phones := &fakePhones{}
	done := make(chan struct{})
	go func() { NewKeepalive(tb, phones, 0, nil).Run(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run with no interval did not return")
	}
	if phones.count() != 0 {
		t.Fatal("pinged with keepalive off")
	}
}

func TestKeepaliveRoundCountsAnswers(t *testing.T) {
	statuses := map[string]int{"200": 200, "404": 404, "486": 486, "503": 503, "timeout": 0}
	var bindings []Binding
	for aor := range statuses {
		bindings = append(bindings, bind(aor, "sip:"+aor+"@x", time.Now().Add(time.Hour)))
	}
	phones := &fakePhones{answer: func(ctx context.Context, b Binding) (int, error) {
		if b.AOR == "timeout" {
			<-ctx.Done() // a phone gone: the round's timeout ends the wait
			return 0, ctx.Err()
		}
		return statuses[b.AOR], nil
	}}
	k := NewKeepalive(New(), phones, 100*time.Millisecond, nil)
	start := time.Now()
	if ok := k.Round(context.Background(), bindings); ok != 3 {
		t.Fatalf("answered %d; want 3 (200, 404, 486)", ok)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("a silent phone held the round %v", d)
	}
}

func TestKeepaliveRoundIsBounded(t *testing.T) {
	var inFlight, most atomic.Int64
	phones := &fakePhones{answer: func(ctx context.Context, b Binding) (int, error) {
		n := inFlight.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(2 * time.Millisecond)
		inFlight.Add(-1)
		return 200, nil
	}}
	var bindings []Binding
	for i := range 500 {
		aor := fmt.Sprint(1000 + i)
		bindings = append(bindings, bind(aor, "sip:"+aor+"@x", time.Now().Add(time.Hour)))
	}
	k := NewKeepalive(New(), phones, time.Second, nil)
	if ok := k.Round(context.Background(), bindings); ok != 500 {
		t.Fatalf("answered %d", ok)
	}
	if m := most.Load(); m > keepaliveConcurrency || m < 2 {
		t.Fatalf("%d pings in flight at once; bound %d", m, keepaliveConcurrency)
	}
}

func TestKeepaliveRoundStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var bindings []Binding
	for i := range 500 {
		aor := fmt.Sprint(1000 + i)
		bindings = append(bindings, bind(aor, "sip:"+aor+"@x", time.Now().Add(time.Hour)))
	}
	phones := &fakePhones{answer: func(ctx context.Context, b Binding) (int, error) {
		cancel() // callgate stops during the round
		<-ctx.Done()
		return 0, errors.New("stopped")
	}}
	done := make(chan int)
	go func() { done <- NewKeepalive(New(), phones, time.Hour, nil).Round(ctx, bindings) }()
	select {
	case ok := <-done:
		if ok != 0 || phones.count() > keepaliveConcurrency {
			t.Fatalf("answered %d, sent %d after the stop", ok, phones.count())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the round went on after its context ended")
	}
}
