package connlimit

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Listener wraps ln so that every connection it accepts is tracked by l:
// connections over the cap are closed before Accept returns, and the rest
// are returned as *Conn. key picks the address a connection counts against;
// nil means its remote IP (right for plain TCP, where there is no proxy).
func (l *Limiter) Listener(ln net.Listener, key func(net.Conn) netip.Addr) net.Listener {
	if key == nil {
		key = RemoteIP
	}
	return &listener{Listener: ln, l: l, key: key, closed: make(chan struct{})}
}

type listener struct {
	net.Listener
	l      *Limiter
	key    func(net.Conn) netip.Addr
	once   sync.Once
	closed chan struct{}
}

// Accept returns the next admitted connection. Errors other than a closed
// listener (out of file descriptors, an aborted handshake) are waited out
// and retried: sipgo stops serving a listener for good on the first error
// Accept returns, and running out of descriptors under a flood must not
// leave the phones without a SIP TCP listener once it passes.
func (ln *listener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			if delay == time.Second || delay == 5*time.Millisecond {
				ln.l.cfg.Log.Warn("accept failed, retrying", "error", err, "retry_in", delay.String())
			}
			select {
			case <-ln.closed:
				return nil, net.ErrClosed
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		if tc, ok := ln.l.Track(c, ln.key(c)); ok {
			return tc, nil
		}
	}
}

// Close closes the listener and ends a retry wait in Accept.
func (ln *listener) Close() error {
	ln.once.Do(func() { close(ln.closed) })
	return ln.Listener.Close()
}
