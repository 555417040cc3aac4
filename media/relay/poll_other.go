//go:build !linux

package relay

import (
	"errors"
	"net/netip"
	"sync/atomic"
)

// The forwarding loops use epoll; callgate is a Linux appliance.
var errNotLinux = errors.New("relay: needs Linux (epoll)")

type sock struct {
	fd   int
	leg  *leg
	rtcp bool
	slot int32
}

type worker struct{ sessions atomic.Int32 }

func newWorker() (*worker, error)            { return nil, errNotLinux }
func (w *worker) add(...*sock)               {}
func (w *worker) remove(...*sock)            {}
func (w *worker) close()                     {}
func listenUDP(netip.Addr, int) (int, error) { return -1, errNotLinux }
