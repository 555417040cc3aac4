package main

import (
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// reloader puts another configuration file in callgate's place halfway
// through the hold and sends SIGHUP (-reload), then reports what the calls
// saw: BYEs from callgate before the generator hung up (dropped calls),
// and the longest time any stream went without a packet in the seconds
// after the signal against the same span just before it.
type reloader struct {
	next, path string // the new file and the daemon's
	pid        int
	dry        bool // measure the same spans without reloading (a control run)
	// at is the planned signal time (Unix ns) and win the span measured
	// on each side of it; both are set before media starts.
	at, win int64
	sent    atomic.Int64 // when the signal went out (Unix ns)
	byes    atomic.Int64 // BYEs from callgate while no hang-up was expected
	ending  atomic.Bool  // the generator is hanging up
}

// rl is nil without -reload.
var rl *reloader

// schedule plans the reload after d from now, measuring win on each side.
func (r *reloader) schedule(d, win time.Duration) {
	r.at, r.win = time.Now().Add(d).UnixNano(), int64(win)
	go func() {
		time.Sleep(time.Until(time.Unix(0, r.at)))
		if r.dry {
			r.sent.Store(time.Now().UnixNano())
			return
		}
		b, err := os.ReadFile(r.next)
		if err == nil {
			err = os.WriteFile(r.path+".tmp", b, 0o600)
		}
		if err == nil {
			err = os.Rename(r.path+".tmp", r.path) // callgate never reads half a file
		}
		if err == nil {
			r.sent.Store(time.Now().UnixNano())
			err = syscall.Kill(r.pid, syscall.SIGHUP)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "reload:", err)
		}
	}()
}

// bye counts a BYE from callgate.
func (r *reloader) bye() {
	if r != nil && !r.ending.Load() {
		r.byes.Add(1)
	}
}

// arrived notes a packet of e that reached the generator at (Unix ns)
// lat after the generator stamped it. Only the side's reader goroutine
// calls it for e.
//
// The gap between two packets of a stream is the generator's own send gap
// plus the rise in latency from the first to the second. On two cores
// shared with callgate the generator's send gaps reach tens of
// milliseconds by themselves, so the rise is reported too: 20 ms plus the
// worst rise is the gap a steady sender (a phone, the VPBX) would have
// seen, which is what callgate adds.
func (r *reloader) arrived(e *endpoint, at, lat int64) {
	if r == nil {
		return
	}
	if e.last != 0 {
		gap, rise := at-e.last, lat-e.lastLat
		switch {
		case at >= r.at-r.win && at < r.at:
			e.gapBefore, e.riseBefore = max(e.gapBefore, gap), max(e.riseBefore, rise)
		case at >= r.at && at < r.at+r.win:
			e.gapAfter, e.riseAfter = max(e.gapAfter, gap), max(e.riseAfter, rise)
		}
	}
	e.last, e.lastLat = at, lat
}

// report prints the dropped calls and the worst gaps; the readers have
// stopped.
func (r *reloader) report(eps []*endpoint) {
	var before, after, riseBefore, riseAfter time.Duration
	for _, e := range eps {
		before, after = max(before, time.Duration(e.gapBefore)), max(after, time.Duration(e.gapAfter))
		riseBefore, riseAfter = max(riseBefore, time.Duration(e.riseBefore)), max(riseAfter, time.Duration(e.riseAfter))
	}
	late := time.Duration(r.sent.Load() - r.at)
	what := "reload"
	if r.dry {
		what = "no reload (control)"
	}
	fmt.Printf("%s: signalled=%v (%s late) dropped_calls=%d worst_gap_%s_before=%s worst_gap_%s_after=%s (streams: %d)\n",
		what, r.sent.Load() != 0 && !r.dry, late.Round(time.Microsecond), r.byes.Load(), time.Duration(r.win), before.Round(10*time.Microsecond),
		time.Duration(r.win), after.Round(10*time.Microsecond), len(eps))
	// A stream's packets leave the generator every 20 ms.
	fmt.Printf("%s: steady-sender gap (20 ms + worst latency rise) %s before=%s after=%s\n", what, time.Duration(r.win),
		(20*time.Millisecond + riseBefore).Round(10*time.Microsecond), (20*time.Millisecond + riseAfter).Round(10*time.Microsecond))
}
