// Package api is callgate's HTTP interface: health and readiness probes,
// Prometheus metrics, and (for the CRM and the console) the JSON API.
// Everything but the probes requires a bearer token.
package api

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one readiness condition: nil error means satisfied.
type Check struct {
	Name string
	Fn   func() error
}

// Server builds the HTTP handler.
type Server struct {
	Tokens   *Tokens
	Gatherer prometheus.Gatherer
	Ready    []Check
	// Degraded are checks whose failure /readyz reports without making
	// callgate unready: parts whose trouble calls do not feel (the
	// recordings' archive).
	Degraded []Check
	Calls    CallStore // nil: no call history endpoints
	// Recordings serves recording files (nil: no recording endpoints).
	Recordings *Recordings
	// Events is the live event feed (nil: no /api/v1/events).
	Events *Feed
	// Dialer places click-to-calls and hangs up (nil: not offered).
	Dialer Dialer
	// CRM are the CRMs' queues (nil: no /api/v1/crm endpoints).
	CRM CRMQueues
	// Routes are more endpoints by pattern (CRM callbacks); each
	// authenticates its callers itself.
	Routes map[string]http.Handler
	// Sessions are console logins (nil: bearer tokens only).
	Sessions *Sessions
	// Clients looks callers up in the CRMs (nil: not offered).
	Clients ClientLookup
	// Zone is the office's time zone for per-day statistics.
	Zone *time.Location
	// Region reads searched numbers written without a country code
	// (calls.default_region; "" reads them as Russian).
	Region string
	// OutOfHours tells missed calls outside business hours (nil: none).
	OutOfHours func(time.Time) bool
	// Desks are the shared desks for shift work (nil: none).
	Desks Desks
	// DeskKey signs the marks that make browsers desks' PCs (nil: no
	// marks).
	DeskKey []byte
	// Presence is the employees' statuses (nil: no /api/v1/presence).
	Presence Presence
	// Phone mints the browser phone's SIP credentials (nil: no
	// /api/v1/phone).
	Phone Phone
	// PhoneBindings drops the registrations a session's passes made when
	// it logs out (nil: they last until their connection closes).
	PhoneBindings interface {
		DropPass(tag string, now time.Time) int
	}
	// Admin serves the admin page (nil: no admin endpoints).
	Admin Admin
	// Proxies are the reverse proxies whose forwarding headers name the
	// client and the scheme it used (nil: every peer is the client itself,
	// and only TLS to callgate is https). Strict-Transport-Security and
	// Secure session cookies go to clients that talk https.
	Proxies *Proxies
	// Log receives failed logins, tokens and links with the client's
	// address (nil: slog.Default()).
	Log *slog.Logger

	fails failures
}

// Handler returns the HTTP routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", s.auth(adminOnly(promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{}))))
	if s.Calls != nil {
		s.callRoutes(mux)
		if rs, ok := s.Calls.(ReportStore); ok {
			s.reportRoutes(mux, rs)
		}
	}
	if s.Sessions != nil {
		s.sessionRoutes(mux)
	}
	if s.Clients != nil {
		s.clientRoutes(mux)
	}
	if s.Desks != nil {
		s.deskRoutes(mux)
		s.deskPCRoutes(mux)
	}
	if s.Presence != nil {
		s.presenceRoutes(mux)
	}
	if s.Phone != nil {
		mux.Handle("POST /api/v1/phone", s.auth(http.HandlerFunc(s.phonePass)))
	}
	if s.Admin != nil {
		mux.Handle("GET /api/v1/admin", s.auth(adminOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, s.Admin.AdminView())
		}))))
		mux.Handle("POST /api/v1/admin/unban", s.auth(adminOnly(http.HandlerFunc(s.unban))))
	}
	if s.Recordings != nil && s.Calls != nil {
		s.recordingRoutes(mux)
	}
	if s.Dialer != nil && s.Calls != nil {
		s.dialRoutes(mux)
	}
	if s.CRM != nil {
		s.crmRoutes(mux)
	}
	for pattern, h := range s.Routes {
		mux.Handle(pattern, h)
	}
	if s.Events != nil {
		mux.Handle("GET /api/v1/events", s.auth(http.HandlerFunc(s.events)))
	}
	// Profiles for operators chasing a performance problem; admin token.
	mux.Handle("GET /debug/pprof/", s.auth(adminOnly(http.HandlerFunc(pprof.Index))))
	mux.Handle("GET /debug/pprof/profile", s.auth(adminOnly(http.HandlerFunc(pprof.Profile))))
	mux.Handle("GET /debug/pprof/trace", s.auth(adminOnly(http.HandlerFunc(pprof.Trace))))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		Error(w, http.StatusNotFound, "not_found", "no such endpoint")
	})
	return s.harden(mux)
}

// readyz answers 200 when every check passes, 503 otherwise. Only an
// authenticated caller learns which checks failed and why.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	failed := map[string]string{}
	for _, c := range s.Ready {
		if err := c.Fn(); err != nil {
			failed[c.Name] = err.Error()
		}
	}
	status := http.StatusOK
	if len(failed) > 0 {
		status = http.StatusServiceUnavailable
	}
	degraded := map[string]string{}
	for _, c := range s.Degraded {
		if err := c.Fn(); err != nil {
			degraded[c.Name] = err.Error()
		}
	}
	body := map[string]any{"ready": len(failed) == 0}
	if s.Tokens.Valid(bearer(r)) {
		if len(failed) > 0 {
			body["failed"] = failed
		}
		if len(degraded) > 0 {
			body["degraded"] = degraded
		}
	}
	writeJSON(w, status, body)
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// Error writes the JSON error shape every endpoint uses.
func Error(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
