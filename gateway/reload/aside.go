package reload

import (
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// aside runs f, a burst of CPU that must not delay the media relay, and
// returns when it is done.
//
// A reload is tens of milliseconds of CPU in one goroutine (reading 1,000
// employees, then applying them). Go lets a goroutine keep its processor
// (P) for 10 ms before preempting it; with every P busy, a relay worker
// returning from epoll_wait waits for one, and at 500 calls on 2 cores
// streams went up to 50 ms without a packet during a reload. So for f's
// length the process gets one P more than it had, and f runs on a thread
// of its own at nice 10: the relay's threads always find a P, and the
// kernel, which weighs a nice-10 thread at a tenth of a normal one, runs
// them first when the cores are busy.
//
// The goroutine locks its thread and exits without unlocking it, so Go
// ends that thread rather than give its lowered priority to other
// goroutines (raising it back needs CAP_SYS_NICE, which the service does
// not have).
func aside(f func()) {
	procs := runtime.GOMAXPROCS(0)
	runtime.GOMAXPROCS(procs + 1)
	defer func() {
		if os.Getenv("GOMAXPROCS") != "" {
			runtime.GOMAXPROCS(procs) // what the admin set
		} else {
			runtime.SetDefaultGOMAXPROCS() // the CPUs or the cgroup's quota, followed as at start
		}
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 10) // best effort: without it f still has a P of its own
		f()
	}()
	<-done
}
