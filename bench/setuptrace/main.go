// Command setuptrace reads a runtime trace of callgate (from
// /debug/pprof/trace) taken while calls are set up, and reports how long
// each inbound INVITE spent inside callgate: from its handler's start to
// the 200 OK it sends the caller, and the same without the time spent
// waiting for the phone to answer (the delay callgate adds). For the
// slowest calls it says where the time went: running, runnable (waiting
// for a P), blocked (and on what), in system calls, and whether a GC mark
// phase overlapped.
//
//	go run ./bench/setuptrace trace.out
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

func main() {
	slowest := flag.Int("slowest", 5, "how many of the slowest calls to explain")
	flag.Parse()
	if flag.NArg() != 1 {
		log.Fatal("usage: setuptrace TRACE")
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	calls, gcs, err := read(f)
	if err != nil {
		log.Fatal(err)
	}
	if len(calls) == 0 {
		log.Fatal("no INVITE answered in the trace")
	}
	total := make([]time.Duration, len(calls))
	added := make([]time.Duration, len(calls))
	for i, c := range calls {
		total[i], added[i] = c.total(), c.added()
	}
	fmt.Printf("invites=%d inside_p50=%s p99=%s max=%s added_p50=%s added_p99=%s added_max=%s gc_mark_phases=%d\n",
		len(calls), pct(total, 0.5), pct(total, 0.99), pct(total, 1), pct(added, 0.5), pct(added, 0.99), pct(added, 1), len(gcs))
	slices.SortFunc(calls, func(a, b *call) int { return int(b.added() - a.added()) })
	for _, c := range calls[:min(*slowest, len(calls))] {
		inGC := false
		for _, g := range gcs {
			inGC = inGC || (c.start < g[1] && g[0] < c.answered)
		}
		fmt.Printf("  added=%s running=%s runnable=%s syscall=%s blocked=%s phone=%s gc=%v %s\n", c.added(),
			c.state[trace.GoRunning], c.state[trace.GoRunnable], c.state[trace.GoSyscall], c.state[trace.GoWaiting]-c.phone, c.phone, inGC,
			strings.Join(c.blocked, "; "))
	}
}

// call is one INVITE handler goroutine until it answers its caller.
type call struct {
	start, answered trace.Time
	phone           time.Duration // blocked waiting for the phone's answer
	state           map[trace.GoState]time.Duration
	since           trace.Time
	blockedOn       string
	blocked         []string // blocks over 300 µs, other than the phone's
}

func (c *call) total() time.Duration { return c.answered.Sub(c.start) }
func (c *call) added() time.Duration { return c.total() - c.phone }

func read(r io.Reader) ([]*call, [][2]trace.Time, error) {
	tr, err := trace.NewReader(r)
	if err != nil {
		return nil, nil, err
	}
	open := map[trace.GoID]*call{}
	var done []*call
	var gcs [][2]trace.Time
	var gcStart trace.Time
	for {
		ev, err := tr.ReadEvent()
		if err == io.EOF {
			return done, gcs, nil
		}
		if err != nil {
			return nil, nil, err
		}
		switch ev.Kind() {
		case trace.EventRangeBegin:
			if strings.HasPrefix(ev.Range().Name, "GC concurrent mark") {
				gcStart = ev.Time()
			}
		case trace.EventRangeEnd:
			if strings.HasPrefix(ev.Range().Name, "GC concurrent mark") && gcStart != 0 {
				gcs = append(gcs, [2]trace.Time{gcStart, ev.Time()})
			}
		case trace.EventStateTransition:
			st := ev.StateTransition()
			if st.Resource.Kind != trace.ResourceGoroutine {
				continue
			}
			g := st.Resource.Goroutine()
			from, to := st.Goroutine()
			if from == trace.GoNotExist && has(st.Stack, "handleRequestBackground") {
				open[g] = &call{start: ev.Time(), since: ev.Time(), state: map[trace.GoState]time.Duration{}}
				continue
			}
			c := open[g]
			if c == nil {
				continue
			}
			d := ev.Time().Sub(c.since)
			c.state[from] += d
			if from == trace.GoWaiting {
				if strings.Contains(c.blockedOn, "(*call).await") {
					c.phone += d
				} else if d > 300*time.Microsecond {
					c.blocked = append(c.blocked, fmt.Sprintf("%s on %s", d, c.blockedOn))
				}
			}
			c.since = ev.Time()
			if to == trace.GoWaiting {
				c.blockedOn = st.Reason + " " + frames(st.Stack)
			}
			if to == trace.GoSyscall && has(ev.Stack(), "(*call).connect") && has(ev.Stack(), "Respond") {
				c.answered = ev.Time()
				done = append(done, c)
				delete(open, g)
			}
			if to == trace.GoNotExist {
				delete(open, g)
			}
		}
	}
}

func has(s trace.Stack, sub string) bool {
	for f := range s.Frames() {
		if strings.Contains(f.Func, sub) {
			return true
		}
	}
	return false
}

// frames names the first three callgate or sipgo functions of a stack.
func frames(s trace.Stack) string {
	var out []string
	for f := range s.Frames() {
		if strings.HasPrefix(f.Func, "callgate/") || strings.Contains(f.Func, "sipgo") {
			out = append(out, f.Func[strings.LastIndex(f.Func, "/")+1:])
			if len(out) == 3 {
				break
			}
		}
	}
	return strings.Join(out, " < ")
}

func pct(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}
