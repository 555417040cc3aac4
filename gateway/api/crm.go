package api

import (
	"net/http"

	"callgate/crm/outbox"
)

// CRMQueues are the enabled CRMs' delivery queues.
type CRMQueues interface {
	// Queues reports each enabled CRM's queue by CRM name.
	Queues() map[string]outbox.Status
	// RetryDead puts a CRM's dead letters back in its queue and says how
	// many; a CRM that is not enabled is an error.
	RetryDead(name string) (int, error)
}

func (s *Server) crmRoutes(mux *http.ServeMux) {
	mux.Handle("GET /api/v1/crm/status", s.auth(adminOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := s.CRM.Queues()
		out := map[string]any{}
		for name, v := range st {
			out[name] = map[string]any{"depth": v.Depth, "oldest_age_seconds": v.OldestAge.Seconds(), "dead_letters": v.Dead, "last_error": v.LastError}
		}
		writeJSON(w, http.StatusOK, map[string]any{"crm": out})
	}))))
	mux.Handle("POST /api/v1/crm/{name}/retry", s.auth(adminOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := s.CRM.RetryDead(r.PathValue("name"))
		if err != nil {
			Error(w, http.StatusNotFound, "crm_not_enabled", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"requeued": n})
	}))))
}
