package sipstack

import (
	"context"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Watchdog pings systemd's watchdog at half its interval for as long as
// the SIP listeners are up, so systemd restarts a callgate whose phones
// can no longer reach it. It returns at once when the unit has no
// watchdog.
func (s *Stack) Watchdog(ctx context.Context) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval == 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if s.Listening() {
				_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
			}
		}
	}
}
