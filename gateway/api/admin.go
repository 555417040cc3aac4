package api

import (
	"net/http"
	"time"

	"callgate/crm/outbox"
	"callgate/gateway/recordings"
	"callgate/gateway/storehealth"
	"callgate/sip/guard"
	"callgate/sip/trunk"
)

// Admin serves the console's admin page.
type Admin interface {
	// AdminView is the page's snapshot.
	AdminView() AdminView
	// Unban lifts a SIP security ban on a source ("IP:port" or "IP") and
	// reports whether there was one.
	Unban(source string) bool
}

// AdminView is what the admin page shows (GET /api/v1/admin).
type AdminView struct {
	Phones     []AdminPhone             `json:"phones"`
	Upstream   []trunk.Status           `json:"upstream"`
	CRM        map[string]outbox.Status `json:"crm"`
	Recordings recordings.Usage         `json:"recordings"`
	Store      storehealth.View         `json:"store"` // the database: free space under data_dir, writes waiting
	Bans       []guard.Ban              `json:"bans"`
	// Draining: callgate is stopping; calls in progress may finish, new
	// ones are refused.
	Draining bool `json:"draining"`
}

// AdminPhone is one registered device on the admin page.
type AdminPhone struct {
	Extension string    `json:"extension"`
	Employee  string    `json:"employee,omitempty"`
	Source    string    `json:"source"`
	Transport string    `json:"transport"`
	UserAgent string    `json:"user_agent,omitempty"`
	Expires   time.Time `json:"expires"`
	Since     time.Time `json:"since"`
}

// unban lifts a SIP security ban: {"source": "IP:port" or "IP"}.
func (s *Server) unban(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Source string `json:"source"`
	}
	if answered, err := readJSON(w, r, maxSmallBody, &body); answered {
		return
	} else if err != nil || body.Source == "" {
		Error(w, http.StatusBadRequest, "bad_request", `send {"source": "<IP:port or IP>"}`)
		return
	}
	if !s.Admin.Unban(body.Source) {
		Error(w, http.StatusNotFound, "ban_not_found", "no ban on this source")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
