package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// reloadSignals catches SIGHUP from now on, before the gateway is built:
// SIGHUP's default action would end the process, and a reload asked for
// during start-up is kept for when it is running. Stop releases it.
func reloadSignals() (hups <-chan os.Signal, stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	return ch, func() { signal.Stop(ch) }
}

// serveReloads calls reload for each SIGHUP (systemctl reload) until ctx
// ends, one at a time; signals that arrive during a reload make one more.
func serveReloads(ctx context.Context, hups <-chan os.Signal, reload func()) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hups:
			reload()
		}
	}
}
