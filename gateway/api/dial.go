package api

import (
	"errors"
	"net/http"
	"strings"
)

// ClickToCallRequest is the body of POST /api/v1/calls.
type ClickToCallRequest struct {
	Employee   string `json:"employee"`
	Number     string `json:"number"`
	Line       string `json:"line,omitempty"`
	FromNumber string `json:"from_number,omitempty"`
}

// DialError is a refusal to place or change a call, with the HTTP status
// and stable code the API answers.
type DialError struct {
	Status  int
	Code    string
	Message string
	// Rule names the dial rule that refused (code "dial_rule").
	Rule string
}

func (e *DialError) Error() string { return e.Message }

// Dialer places and ends calls (the gateway).
type Dialer interface {
	ClickToCall(ClickToCallRequest) (string, error)
	Hangup(id string) bool
	// Transfer moves a connected call to "to" (an employee id, an
	// extension or a number) and returns once the target answered: the
	// call is then "transferred" (blind) or "consulting" (attended).
	Transfer(id, to, mode string) (state string, err error)
	// FinishTransfer completes ("complete") or cancels ("cancel") an
	// attended transfer's consultation.
	FinishTransfer(id, how string) error
}

// TransferRequest is the body of POST /api/v1/calls/{id}/transfer.
type TransferRequest struct {
	To   string `json:"to"`
	Mode string `json:"mode"`
}

func (s *Server) dialRoutes(mux *http.ServeMux) {
	mux.Handle("POST /api/v1/calls", s.auth(http.HandlerFunc(s.clickToCall)))
	mux.Handle("DELETE /api/v1/calls/{id}", s.auth(http.HandlerFunc(s.hangup)))
	mux.Handle("POST /api/v1/calls/{id}/transfer", s.auth(http.HandlerFunc(s.transfer)))
	mux.Handle("POST /api/v1/calls/{id}/transfer/complete", s.auth(http.HandlerFunc(s.finishTransfer("complete"))))
	mux.Handle("POST /api/v1/calls/{id}/transfer/cancel", s.auth(http.HandlerFunc(s.finishTransfer("cancel"))))
}

// mayControl answers 404 itself when an employee token asks about a call
// that is not theirs.
func (s *Server) mayControl(w http.ResponseWriter, r *http.Request, id string) bool {
	if p := principal(r); p.Kind == "employee" {
		rec, err := s.Calls.Get(id)
		if err != nil || !p.Sees(rec) {
			Error(w, http.StatusNotFound, "call_not_found", "no call in progress with this id")
			return false
		}
	}
	return true
}

// finishTransfer: POST /api/v1/calls/{id}/transfer/complete|cancel.
func (s *Server) finishTransfer(how string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if !s.mayControl(w, r, id) {
			return
		}
		if err := s.Dialer.FinishTransfer(id, how); err != nil {
			writeDialError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"id": id, "state": map[string]string{"complete": "completing", "cancel": "cancelling"}[how]})
	}
}

// transfer: POST /api/v1/calls/{id}/transfer. It answers once the target
// has answered (200) or failed (409, the call stays where it was).
func (s *Server) transfer(w http.ResponseWriter, r *http.Request) {
	var req TransferRequest
	if answered, err := readJSON(w, r, maxJSONBody, &req); answered {
		return
	} else if err != nil {
		Error(w, http.StatusBadRequest, "bad_json", "the body must be JSON like {\"to\":\"petrov\",\"mode\":\"blind\"}: "+err.Error())
		return
	}
	if req.Mode == "" {
		req.Mode = "blind"
	}
	if strings.TrimSpace(req.To) == "" {
		Error(w, http.StatusBadRequest, "missing_field", "to is required")
		return
	}
	switch req.Mode {
	case "blind", "attended":
	default:
		Error(w, http.StatusBadRequest, "bad_mode", "mode is blind or attended")
		return
	}
	id := r.PathValue("id")
	if !s.mayControl(w, r, id) {
		return
	}
	extendDeadline(w, transferDeadline) // the answer waits for the target to pick up
	state, err := s.Dialer.Transfer(id, strings.TrimSpace(req.To), req.Mode)
	if err != nil {
		writeDialError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": id, "to": req.To, "mode": req.Mode, "state": state})
}

func writeDialError(w http.ResponseWriter, err error) {
	var de *DialError
	if errors.As(err, &de) && de.Rule != "" {
		writeJSON(w, de.Status, map[string]any{"error": map[string]string{"code": de.Code, "message": de.Message, "rule": de.Rule}})
		return
	}
	if errors.As(err, &de) {
		Error(w, de.Status, de.Code, de.Message)
		return
	}
	Error(w, http.StatusInternalServerError, "internal", "the call could not be placed")
}

// clickToCall: POST /api/v1/calls. Employees may only call from their own
// phone; admins and CRMs for anyone.
func (s *Server) clickToCall(w http.ResponseWriter, r *http.Request) {
	var req ClickToCallRequest
	if answered, err := readJSON(w, r, maxJSONBody, &req); answered {
		return
	} else if err != nil {
		Error(w, http.StatusBadRequest, "bad_json", "the body must be JSON like {\"employee\":\"ivanov\",\"number\":\"+79161234567\"}: "+err.Error())
		return
	}
	req.Employee, req.Number = strings.TrimSpace(req.Employee), strings.TrimSpace(req.Number)
	if req.Employee == "" || req.Number == "" {
		Error(w, http.StatusBadRequest, "missing_field", "employee and number are required")
		return
	}
	if p := principal(r); p.Kind == "employee" && p.Name != req.Employee {
		Error(w, http.StatusForbidden, "forbidden", "an employee token places calls only from that employee's phone")
		return
	}
	id, err := s.Dialer.ClickToCall(req)
	if err != nil {
		writeDialError(w, err)
		return
	}
	w.Header().Set("Location", "/api/v1/calls/"+id)
	writeJSON(w, http.StatusCreated, map[string]string{"id": id})
}

// hangup: DELETE /api/v1/calls/{id} ends a call in progress.
func (s *Server) hangup(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if p := principal(r); p.Kind == "employee" {
		rec, err := s.Calls.Get(id)
		if err != nil || !p.Sees(rec) {
			Error(w, http.StatusNotFound, "call_not_found", "no call in progress with this id")
			return
		}
	}
	if !s.Dialer.Hangup(id) {
		Error(w, http.StatusNotFound, "call_not_found", "no call in progress with this id")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
