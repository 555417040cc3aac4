package crmlink

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"callgate/crm"
)

// finderConn is a connector that can look numbers up: it counts the
// requests, answers after a pause, and fails while fail is set.
type finderConn struct {
	fakeConn
	asked  atomic.Int32
	pause  time.Duration
	fail   atomic.Bool
	client *crm.Client
}

func (c *finderConn) Client(ctx context.Context, phone string) (*crm.Client, error) {
	c.asked.Add(1)
	select {
	case <-time.After(c.pause):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if c.fail.Load() {
		return nil, errors.New("crm down")
	}
	if phone != "+79161234567" {
		return nil, nil
	}
	return c.client, nil
}

// The call's record and every console card asking about one ringing number
// share one round of CRM requests, written in any form the routing reads;
// a caller with a shorter deadline stops waiting without cutting the round
// short for the others; a failure is not reused.
func TestLookupsShareOneRound(t *testing.T) {
	conn := &finderConn{fakeConn: fakeConn{name: "retail"}, pause: 200 * time.Millisecond, client: &crm.Client{CRM: "retail", Name: "Анна"}}
	l := &Link{region: "RU", crms: []*connector{{conn: conn}}}
	var wg sync.WaitGroup
	names := make([]string, 4)
	for i, n := range []string{"+79161234567", "89161234567", "79161234567", "+7 916 123-45-67"} {
		wg.Go(func() {
			c, err := l.Client(context.Background(), n)
			if err == nil && c != nil {
				names[i] = c.Name
			}
		})
	}
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if c, err := l.Client(short, "+79161234567"); c != nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a short deadline: %+v, %v", c, err)
	}
	wg.Wait()
	for i, n := range names {
		if n != "Анна" {
			t.Errorf("caller %d got %q", i, n)
		}
	}
	if c, _ := l.Client(context.Background(), "+79161234567"); c == nil || conn.asked.Load() != 1 {
		t.Fatalf("%d rounds for one ringing number, want 1 (answer %+v)", conn.asked.Load(), c)
	}

	conn.fail.Store(true)
	if _, err := l.Client(context.Background(), "+79160000000"); err == nil {
		t.Fatal("a failing CRM must say so")
	}
	conn.fail.Store(false)
	if c, err := l.Client(context.Background(), "+79160000000"); c != nil || err != nil {
		t.Fatalf("after the failure: %+v, %v (a failure must not be reused)", c, err)
	}
	if got := conn.asked.Load(); got != 3 {
		t.Fatalf("%d rounds, want 3", got)
	}
}
