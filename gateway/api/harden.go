package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"
)

// Request body caps. Every endpoint takes small JSON at most; the backstop
// also covers endpoints that read no JSON (form posts of CRM callbacks), so
// nobody can make a handler buffer megabytes.
const (
	maxBody      = 64 << 10 // any request
	maxJSONBody  = 64 << 10 // click-to-call, transfer
	maxLoginBody = 4 << 10
	maxSmallBody = 1 << 10 // desks, unban
)

// hstsValue asks browsers to keep to https for a year.
const hstsValue = "max-age=31536000"

// harden sets the headers every response carries, caps request bodies and
// settles the client's address (ClientAddr) for every handler.
func (s *Server) harden(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = s.withClient(r)
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		if s.Proxies.HTTPS(r) {
			h.Set("Strict-Transport-Security", hstsValue)
		}
		if !consolePage(r.URL.Path) {
			// API answers hold calls, numbers and names: no cache may keep
			// them. Recordings override this with "private".
			h.Set("Cache-Control", "no-store")
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		next.ServeHTTP(w, r)
	})
}

// consolePage reports whether path is the console's page or its assets,
// which set their own caching.
func consolePage(path string) bool {
	return path == "/" || strings.HasPrefix(path, "/assets/")
}

// readJSON decodes a JSON body of at most limit bytes into v, refusing
// unknown fields. It answers 413 itself when the body is larger (answered
// is then true); other errors are left to the caller, whose message says
// what the body should look like.
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) (answered bool, err error) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if tooLarge(w, err, limit) {
		return true, err
	}
	return false, err
}

// tooLarge answers 413 when err says a body went over its cap.
func tooLarge(w http.ResponseWriter, err error, limit int64) bool {
	var mb *http.MaxBytesError
	if !errors.As(err, &mb) {
		return false
	}
	limit = min(limit, mb.Limit)
	Error(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the request body may hold at most %d bytes", limit))
	return true
}

// jsonBody reports whether a request says its body is JSON. A form or
// text/plain body can be sent by any web page without a CORS preflight, so
// an endpoint that accepts only JSON cannot be driven from another site.
func jsonBody(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/json"
}

// transferDeadline bounds a transfer request, which waits for the target
// to answer: longer than any ring timeout, shorter than forever.
const transferDeadline = 10 * time.Minute

// recordingDeadline is how long serving a recording may take: a minute,
// plus the time to send the file at 32 KiB/s (a slow mobile link; the
// recording itself is 32 KB per second of call).
func recordingDeadline(size int64) time.Duration {
	return time.Minute + time.Duration(size/(32<<10))*time.Second
}

// extendDeadline gives a handler that takes long by design its own write
// deadline instead of the server's write timeout.
func extendDeadline(w http.ResponseWriter, d time.Duration) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
}
