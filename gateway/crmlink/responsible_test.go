package crmlink

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

func testLog(t *testing.T) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// answer is one CRM's reply to "who is this client's manager?".
type answer struct {
	employee string
	err      error
	after    time.Duration
}

func (a answer) lookup(ctx context.Context, phone string) (string, error) {
	select {
	case <-time.After(a.after):
		return a.employee, a.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// The responsible manager is the first CRM's, in configuration order, that
// names a mapped employee not excluded from it; a CRM's failure does not
// hide another's answer, and only every CRM failing is an error.
func TestResponsibleLookup(t *testing.T) {
	down := errors.New("CRM unreachable")
	for _, tc := range []struct {
		name    string
		crms    []answer
		exclude map[int]string // CRM index -> employee excluded from it
		want    string
		err     bool
	}{
		{name: "the first CRM knows", crms: []answer{{employee: "ivanov"}, {employee: "petrov"}}, want: "ivanov"},
		{name: "configuration order, not speed", crms: []answer{{employee: "ivanov", after: 50 * time.Millisecond}, {employee: "petrov"}}, want: "ivanov"},
		{name: "the first does not know", crms: []answer{{}, {employee: "petrov"}}, want: "petrov"},
		{name: "the first names an employee excluded from it", crms: []answer{{employee: "ivanov"}, {employee: "petrov"}},
			exclude: map[int]string{0: "ivanov"}, want: "petrov"},
		{name: "the only CRM names an excluded employee", crms: []answer{{employee: "ivanov"}}, exclude: map[int]string{0: "ivanov"}, want: ""},
		{name: "the first fails", crms: []answer{{err: down}, {employee: "petrov"}}, want: "petrov"},
		{name: "one fails, the other does not know", crms: []answer{{err: down}, {}}, want: ""},
		{name: "all fail", crms: []answer{{err: down}, {err: down}}, err: true},
		{name: "nobody knows", crms: []answer{{}, {}}, want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &Link{}
			for i, a := range tc.crms {
				c := &connector{responsible: a.lookup, exclude: map[string]bool{}}
				if e, ok := tc.exclude[i]; ok {
					c.exclude[e] = true
				}
				l.crms = append(l.crms, c)
			}
			got, err := l.responsibleLookup(context.Background(), "+79161234567")
			if got != tc.want || (err != nil) != tc.err {
				t.Fatalf("got %q, %v; want %q (error %v)", got, err, tc.want, tc.err)
			}
		})
	}
}

// A call never waits for the CRM longer than the budget: an answer within
// it is used and cached; a late one is used by the next call; while the
// CRM has lately been slow or failing calls do not wait at all; a stale
// answer is used while it is refreshed.
func TestResponsibleBudgetAndCache(t *testing.T) {
	const budget = 100 * time.Millisecond
	var lookups atomic.Int32
	var reply atomic.Pointer[answer]
	set := func(a answer) { reply.Store(&a) }
	r := newResponsible(func(ctx context.Context, phone string) (string, error) {
		lookups.Add(1)
		return reply.Load().lookup(ctx, phone)
	}, budget, time.Hour)
	timed := func(phone string) (string, time.Duration) {
		start := time.Now()
		who := r.Who(phone)
		return who, time.Since(start)
	}

	set(answer{employee: "ivanov", after: 10 * time.Millisecond})
	if who, took := timed("+7001"); who != "ivanov" || took > budget {
		t.Fatalf("in time: %q after %v", who, took)
	}
	set(answer{employee: "petrov"})
	if who, _ := timed("+7001"); who != "ivanov" || lookups.Load() != 1 {
		t.Fatalf("cached: %q, %d lookups", who, lookups.Load())
	}

	set(answer{employee: "petrov", after: 3 * budget})
	if who, took := timed("+7002"); who != "" || took > 2*budget {
		t.Fatalf("late: %q after %v", who, took)
	}
	// The CRM is troubled now: no call waits, even for a number it would
	// answer at once.
	set(answer{employee: "sidorov"})
	if who, took := timed("+7003"); who != "" || took > budget/2 {
		t.Fatalf("while troubled: %q after %v", who, took)
	}
	// The late answer and the one started in the background land in the
	// cache for the next calls.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		a, b := r.Who("+7002"), r.Who("+7003")
		if a == "petrov" && b == "sidorov" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cache after the late answers: %q %q", a, b)
		}
	}

	// A stale entry is answered at once and refreshed behind.
	r.mu.Lock()
	e := r.cache["+7001"]
	e.at = e.at.Add(-2 * time.Hour)
	r.cache["+7001"] = e
	r.mu.Unlock()
	set(answer{employee: "petrov"})
	if who := r.Who("+7001"); who != "ivanov" {
		t.Fatalf("stale answer %q", who)
	}
	for deadline := time.Now().Add(5 * time.Second); r.Who("+7001") != "petrov"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("stale answer not refreshed")
		}
	}
}

// A failing CRM also makes calls stop waiting for a while.
func TestResponsibleFailureMakesCallsNotWait(t *testing.T) {
	fail := atomic.Bool{}
	fail.Store(true)
	r := newResponsible(func(ctx context.Context, phone string) (string, error) {
		if fail.Load() {
			return "", errors.New("500")
		}
		time.Sleep(300 * time.Millisecond)
		return "ivanov", nil
	}, time.Second, time.Hour)
	if who := r.Who("+7001"); who != "" {
		t.Fatalf("failed lookup named %q", who)
	}
	fail.Store(false)
	start := time.Now()
	if who := r.Who("+7002"); who != "" || time.Since(start) > 150*time.Millisecond {
		t.Fatalf("after a failure: %q after %v", who, time.Since(start))
	}
}
