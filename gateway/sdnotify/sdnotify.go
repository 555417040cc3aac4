// Package sdnotify tells systemd (Type=notify) about a long step of
// callgate's start, so that the unit's TimeoutStartSec does not end it.
package sdnotify

import (
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Extend keeps systemd from giving up on a start that is busy (opening the
// database walks every page first: about 13 s for 2 GB, a year of a busy
// office, here, and a larger one could pass TimeoutStartSec). Until done
// is called systemd is told what is happening and given 30 s more every
// 10 s. Outside systemd it does nothing.
func Extend(what string) (done func()) {
	if sent, _ := daemon.SdNotify(false, "STATUS="+what); !sent {
		return func() {}
	}
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			_, _ = daemon.SdNotify(false, "EXTEND_TIMEOUT_USEC=30000000")
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(stop); _, _ = daemon.SdNotify(false, "STATUS=starting") }
}
