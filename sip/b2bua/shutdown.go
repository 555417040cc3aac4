package b2bua

import (
	"errors"
	"time"
)

// ErrShuttingDown refuses a call while callgate stops.
var ErrShuttingDown = errors.New("callgate is shutting down")

// begin counts a call that is starting, unless callgate is shutting down.
func (b *B2BUA) begin() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.wg.Add(1)
	return true
}

// Wait waits for every call to end.
func (b *B2BUA) Wait() { b.wg.Wait() }

// Drain refuses new calls (an INVITE gets 503 with Retry-After, a
// click-to-call ErrShuttingDown) and lets the calls in progress go on:
// in-dialog requests, hold and hang-up work as before. Wait returns once
// the last of them has ended; Shutdown ends those still running.
func (b *B2BUA) Drain() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
}

// Draining reports whether new calls are refused.
func (b *B2BUA) Draining() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Shutdown refuses new calls and ends every call in progress; Wait then
// waits for them to finish.
func (b *B2BUA) Shutdown() {
	b.mu.Lock()
	b.closed = true
	calls := map[*call]bool{}
	for _, c := range b.legs {
		calls[c] = true
	}
	b.mu.Unlock()
	for c := range calls {
		c.post(func() { c.hangup("system", "shutdown") })
	}
}

// Stop drains and lets the calls in progress finish for up to grace, or
// until now is closed (a second stop signal), then hangs up those still
// running and waits for them; it returns how many it hung up.
func (b *B2BUA) Stop(grace time.Duration, now <-chan struct{}) int {
	b.Drain()
	ended := make(chan struct{})
	go func() { b.Wait(); close(ended) }()
	if n := b.Active(); n > 0 {
		b.log.Info("draining: new calls refused, calls in progress may finish", "calls", n, "grace", grace.String())
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-ended:
		return 0
	case <-timer.C:
	case <-now:
	}
	n := b.Active()
	if n > 0 {
		b.log.Warn("hanging up the calls still in progress", "calls", n)
	}
	b.Shutdown()
	<-ended
	return n
}
