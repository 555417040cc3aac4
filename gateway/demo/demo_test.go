package demo

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDemoShowsTheOfficeWorking runs the demo as `make demo` does, bounded
// in time, and checks that a newcomer sees phones and the trunk register
// and callgate keep the phones alive.
func TestDemoShowsTheOfficeWorking(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6500*time.Millisecond)
	defer cancel()
	out := &lockedBuffer{}
	if err := Run(ctx, Options{HTTP: "127.0.0.1:0", Out: out, Log: io.Discard}); err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	text := out.String()
	for _, want := range []string{
		"phone 101 at 127.0.0.1:", "REGISTER -> 200 OK",
		"VPBX: account sales1 registered by callgate",
		"VPBX: account sales2 registered by callgate",
		"keepalive OPTIONS from callgate",
		"console: http://127.0.0.1:",
		"login ivanov, password demo-ivanov (admin)",
		"summary: calls: ",
		"3 phone registrations, 2 upstream registrations",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", text)
	}
}
