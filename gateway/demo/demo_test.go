package demo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
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

// A taken HTTP address stops the demo before anything starts, with an
// error that names the address.
func TestDemoRefusesATakenHTTPAddress(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := &lockedBuffer{}
	err = Run(ctx, Options{HTTP: l.Addr().String(), Out: out, Log: io.Discard})
	var inUse *HTTPInUseError
	if !errors.As(err, &inUse) || inUse.Addr != l.Addr().String() || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("Run on a taken address: %v", err)
	}
	if out.String() != "" {
		t.Errorf("the demo started anyway:\n%s", out)
	}
}
