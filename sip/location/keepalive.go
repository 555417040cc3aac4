package location

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// OptionsSender sends an OPTIONS request to a registered device at the
// address it registered from (its source, over its transport, from the
// listener it came in on) and returns the status of the final response.
// The SIP stack supplies it.
type OptionsSender interface {
	SendOptions(ctx context.Context, b Binding) (status int, err error)
}

// keepaliveConcurrency bounds the OPTIONS in flight in one round, so that
// a thousand phones are not a thousand goroutines and sockets at once.
const keepaliveConcurrency = 64

// Keepalive pings every registered device with OPTIONS: right away (after
// a restart this re-opens the NAT pinholes the phones registered through)
// and then every interval, so that a phone behind NAT stays reachable for
// calls between its registrations.
type Keepalive struct {
	table *Table
	send  OptionsSender
	every time.Duration
	log   *slog.Logger
}

// NewKeepalive returns the keepalive of table's devices, sent through send
// every interval; an interval of 0 or less sends none.
func NewKeepalive(table *Table, send OptionsSender, every time.Duration, log *slog.Logger) *Keepalive {
	if log == nil {
		log = slog.Default()
	}
	return &Keepalive{table: table, send: send, every: every, log: log}
}

// Run pings every device at once and then every interval until ctx ends.
func (k *Keepalive) Run(ctx context.Context) {
	if k.every <= 0 {
		return
	}
	for {
		if bindings := k.table.All(time.Now()); len(bindings) > 0 {
			ok := k.Round(ctx, bindings)
			k.log.Debug("keepalive round", "bindings", len(bindings), "answered", ok)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(k.every):
		}
	}
}

// Round sends OPTIONS to each binding, a bounded number at a time, each
// waiting at most the interval (and never over 5 s), and reports how many
// devices answered. Any answer below 500 means the device is there.
func (k *Keepalive) Round(ctx context.Context, bindings []Binding) int {
	timeout := 5 * time.Second
	if k.every > 0 {
		timeout = min(k.every, timeout)
	}
	var ok atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, keepaliveConcurrency)
	for _, b := range bindings {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return int(ok.Load())
		}
		wg.Add(1)
		go func(b Binding) {
			defer wg.Done()
			defer func() { <-sem }()
			tctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			status, err := k.send.SendOptions(tctx, b)
			if err != nil {
				k.log.Debug("keepalive unanswered", "aor", b.AOR, "source", b.Source, "error", err)
				return
			}
			if status < 500 {
				ok.Add(1)
			}
		}(b)
	}
	wg.Wait()
	return int(ok.Load())
}
