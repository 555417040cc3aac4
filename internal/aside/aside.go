// Package aside runs bursts of CPU work in the daemon (a configuration
// reload, a backup) so that they do not delay the media relay or call
// set-up.
//
// Go lets a goroutine keep its processor (P) for 10 ms before preempting
// it. With every P busy, a relay worker returning from epoll_wait waits for
// one: at 500 calls on 2 cores, relay workers waited up to 17.6 ms for a P
// while a reload ran. For the length of the work, Run gives the process
// one P more and runs the work on a thread of its own at nice 10: the
// relay's threads and the SIP goroutines still find a P, and the kernel,
// which weighs a nice-10 thread at a tenth of a normal one, runs them first
// when the cores are busy.
package aside

import (
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Nice is the CPU priority of the work's thread.
const Nice = 10

// schedIdle is Linux's SCHED_IDLE policy.
const schedIdle = 5

var procs struct {
	sync.Mutex
	active, base int
}

// Run runs f aside and returns when it is done. Runs may overlap: each has
// its own extra P.
func Run(f func()) { RunAt(Nice, f) }

// Idle is the priority for work that may wait for as long as anything
// else wants the processors (Linux SCHED_IDLE: the kernel runs it only on
// a processor nothing else asks for).
const Idle = 20

// RunAt is Run with the thread at the given nice value instead of Nice,
// or, at Idle, in the idle scheduling class (background work that may
// wait, such as compressing recordings).
func RunAt(nice int, f func()) {
	grow()
	defer shrink()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Never unlocked: when this goroutine exits, Go ends its thread
		// rather than hand the lowered priority on to other goroutines
		// (raising it back needs CAP_SYS_NICE, which the service lacks).
		runtime.LockOSThread()
		if nice >= Idle {
			_ = unix.SchedSetAttr(0, &unix.SchedAttr{Policy: schedIdle, Nice: 19}, 0) // best effort, as below
		} else {
			_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), nice) // best effort: f still has a P of its own
		}
		f()
	}()
	<-done
}

func grow() {
	procs.Lock()
	defer procs.Unlock()
	if procs.active == 0 {
		procs.base = runtime.GOMAXPROCS(0)
	}
	procs.active++
	runtime.GOMAXPROCS(procs.base + procs.active)
}

func shrink() {
	procs.Lock()
	defer procs.Unlock()
	procs.active--
	switch {
	case procs.active > 0:
		runtime.GOMAXPROCS(procs.base + procs.active)
	case os.Getenv("GOMAXPROCS") != "":
		runtime.GOMAXPROCS(procs.base) // what the admin set
	default:
		runtime.SetDefaultGOMAXPROCS() // the CPUs or the cgroup's quota, followed as at start
	}
}
