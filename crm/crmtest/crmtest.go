// Package crmtest holds strict stand-ins for the CRMs' APIs, the way
// net/http/httptest stands in for a real server: they check what a real
// account would check (auth, encodings, required and unknown fields, rate
// limits), answer with the real error shapes, deduplicate like the real
// ones, can be made slow or broken, and keep what they received.
package crmtest

import (
	"net"
	"net/http"
	"net/http/httptest"
)

// Mode is how a stand-in misbehaves.
type Mode int

// Modes.
const (
	Normal  Mode = iota
	Down         // connections are closed without an answer
	Fail500      // every request answers 500
	Busy503      // every request answers 503 with Retry-After: 1
	Slow         // every answer is delayed by Delay
	// DropResponse commits the request, then closes the connection without
	// answering: the client cannot know it succeeded.
	DropResponse
)

// hangUp closes the connection without an answer.
func hangUp(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			c.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// serveAt starts a test server for h listening on addr ("127.0.0.1:0" for
// any port; a load tool needs a known one to put in callgate's
// configuration).
func serveAt(addr string, h http.HandlerFunc) (*httptest.Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := httptest.NewUnstartedServer(h)
	s.Listener.Close()
	s.Listener = l
	s.Start()
	return s, nil
}
