package aside

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// threadNice is the nice value of the calling goroutine's thread, from
// /proc (field 19 of stat).
func threadNice(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/thread-self/stat")
	if err != nil {
		t.Fatal(err)
	}
	// The command name (field 2) may hold spaces: count from after it.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	n, err := strconv.Atoi(fields[16])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRunGivesTheWorkAProcessorAndALowerPriority(t *testing.T) {
	t.Setenv("GOMAXPROCS", "") // restore to the runtime's default
	base := runtime.GOMAXPROCS(0)
	runtime.LockOSThread() // the caller's own thread, to check it is left alone
	defer runtime.UnlockOSThread()
	before := threadNice(t)
	var during, nice int
	Run(func() {
		during = runtime.GOMAXPROCS(0)
		nice = threadNice(t)
	})
	if during != base+1 {
		t.Fatalf("GOMAXPROCS during the work %d, want %d", during, base+1)
	}
	if nice != Nice && before < Nice {
		t.Fatalf("the work ran at nice %d, want %d", nice, Nice)
	}
	if after := runtime.GOMAXPROCS(0); after != base {
		t.Fatalf("GOMAXPROCS after the work %d, want %d again", after, base)
	}
	if now := threadNice(t); now != before {
		t.Fatalf("the caller's thread went from nice %d to %d", before, now)
	}
}

func TestOverlappingRunsEachAddAProcessor(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	base := runtime.GOMAXPROCS(0)
	inside, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		Run(func() { close(inside); <-release })
	}()
	<-inside
	var both int
	Run(func() { both = runtime.GOMAXPROCS(0) })
	one := runtime.GOMAXPROCS(0)
	close(release)
	wg.Wait()
	if both != base+2 || one != base+1 {
		t.Fatalf("GOMAXPROCS with two runs %d, then one %d; want %d and %d", both, one, base+2, base+1)
	}
	if after := runtime.GOMAXPROCS(0); after != base {
		t.Fatalf("GOMAXPROCS after both %d, want %d", after, base)
	}
}

// An admin's GOMAXPROCS is what the process returns to.
func TestRunKeepsTheAdminsSetting(t *testing.T) {
	t.Setenv("GOMAXPROCS", "1")
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	Run(func() {})
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Fatalf("GOMAXPROCS after the work %d, want the admin's 1", n)
	}
}

// Work that may wait runs in the idle scheduling class, with its own
// processor like any other run, and leaves the caller's thread as it was.
func TestRunAtIdle(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var policy uint32
	RunAt(Idle, func() {
		if a, err := unix.SchedGetAttr(0, 0); err == nil {
			policy = a.Policy
		}
	})
	if policy != schedIdle {
		t.Fatalf("the work ran in scheduling class %d, want SCHED_IDLE (%d)", policy, schedIdle)
	}
	if after, err := unix.SchedGetAttr(0, 0); err != nil || after.Policy != before.Policy {
		t.Fatalf("the caller's class went from %d to %v (%v)", before.Policy, after, err)
	}
}
