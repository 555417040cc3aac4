package crmtest

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
)

// Replay is an http.RoundTripper that answers every request with one
// canned response: for fuzzing how a connector decodes whatever a CRM (or
// a proxy in front of it) might send back, without a network.
type Replay struct {
	Status     int
	Body       []byte
	RetryAfter string
	// Requests counts the requests answered (connectors may ask several
	// at once).
	Requests atomic.Int64
}

// RoundTrip implements http.RoundTripper.
func (r *Replay) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	r.Requests.Add(1)
	status := r.Status
	if status < 100 || status > 999 {
		status = http.StatusOK
	}
	h := http.Header{"Content-Type": {"application/json"}}
	if r.RetryAfter != "" {
		h.Set("Retry-After", r.RetryAfter)
	}
	return &http.Response{StatusCode: status, Status: strconv.Itoa(status), Header: h, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Body: io.NopCloser(bytes.NewReader(r.Body)), ContentLength: int64(len(r.Body)), Request: req}, nil
}
