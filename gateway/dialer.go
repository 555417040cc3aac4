package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"callgate/gateway/api"
	"callgate/sip/b2bua"
	"callgate/sip/trunk"
)

// dialer places click-to-calls for the API.
type dialer struct{ g *Gateway }

// outgoingDisplay is the caller name a phone shows for a click-to-call, so
// the employee knows it is an outgoing call to the number shown.
const outgoingDisplay = "Исходящий вызов"

func refuse(status int, code, msg string) error {
	return &api.DialError{Status: status, Code: code, Message: msg}
}

func (d dialer) ClickToCall(req api.ClickToCallRequest) (string, error) {
	g := d.g
	emp, ok := g.dir.Employee(req.Employee)
	if !ok {
		return "", refuse(http.StatusNotFound, "unknown_employee", "no employee with this id")
	}
	route, e164, err := g.router.ClickToCall(emp.ID, req.Number, req.FromNumber)
	if ref := (*b2bua.Refusal)(nil); errors.As(err, &ref) {
		return "", dialRuleError(ref)
	}
	if err != nil {
		return "", refuse(http.StatusBadRequest, "invalid_number", "not a phone number callgate can dial: "+req.Number)
	}
	placed := false
	defer func() {
		if !placed && route.Lease != nil {
			route.Lease.End() // refused below: the call never starts
		}
	}()
	if !g.upstreamRegistered(route.Account.User) {
		return "", refuse(http.StatusServiceUnavailable, "upstream_not_registered", "the upstream account "+route.Account.User+" is not registered with the VPBX")
	}
	lines := emp.Extensions
	if req.Line != "" {
		if !slices.Contains(emp.Extensions, req.Line) {
			return "", refuse(http.StatusBadRequest, "bad_line", "line "+req.Line+" is not one of the employee's extensions")
		}
		lines = []string{req.Line}
	}
	// The preferred line is the first listed that is registered and free.
	registered, free := "", ""
	now := time.Now()
	for _, ext := range lines {
		if len(g.reg.Location().Lookup(ext, now)) == 0 {
			continue
		}
		if registered == "" {
			registered = ext
		}
		if !g.b2b.Busy(ext) {
			free = ext
			break
		}
	}
	switch {
	case registered == "":
		return "", refuse(http.StatusConflict, "no_registered_phone", "the employee has no registered phone")
	case free == "":
		return "", refuse(http.StatusConflict, "all_lines_busy", "every line of the employee is in a call")
	}
	id, err := g.b2b.ClickToCall(b2bua.ClickToCall{Line: b2bua.Target{Extension: free, Employee: emp.ID},
		Route: route, Outside: e164, Display: outgoingDisplay})
	if errors.Is(err, b2bua.ErrNotRegistered) {
		return "", refuse(http.StatusConflict, "no_registered_phone", "the employee has no registered phone")
	}
	if errors.Is(err, b2bua.ErrShuttingDown) {
		return "", refuse(http.StatusServiceUnavailable, "shutting_down", err.Error())
	}
	if err != nil {
		return "", refuse(http.StatusServiceUnavailable, "media_unavailable", err.Error())
	}
	placed = true
	return id, nil
}

// dialRuleError is the API's answer to a call or transfer the dial rules
// refused.
func dialRuleError(ref *b2bua.Refusal) error {
	return &api.DialError{Status: http.StatusForbidden, Code: "dial_rule", Rule: ref.Rule,
		Message: "the dial rules do not allow this number (" + ref.Rule + ")"}
}

func (d dialer) Hangup(id string) bool { return d.g.b2b.HangupByAPI(id) }

// upstreamRegistered reports whether an upstream account is registered.
func (g *Gateway) upstreamRegistered(user string) bool {
	if g.trunk == nil {
		return false
	}
	for _, s := range g.trunk.Statuses() {
		if s.Account == user {
			return s.State == trunk.StateRegistered
		}
	}
	return false
}

func (d dialer) Transfer(id, to, mode string) (string, error) {
	var (
		code   int
		reason string
		err    error
		state  = "transferred"
	)
	if mode == "attended" {
		code, reason, err = d.g.b2b.ConsultTransfer(id, to)
		state = "consulting"
	} else {
		code, reason, err = d.g.b2b.Transfer(id, to, mode)
	}
	if ref := (*b2bua.Refusal)(nil); errors.As(err, &ref) {
		return "", dialRuleError(ref)
	}
	switch {
	case errors.Is(err, b2bua.ErrNoCall):
		return "", refuse(http.StatusNotFound, "call_not_found", "no call in progress with this id")
	case errors.Is(err, b2bua.ErrTransferState):
		return "", refuse(http.StatusConflict, "not_transferable", "the call is not connected to an employee (still ringing, internal, or already being transferred)")
	case err != nil:
		return "", refuse(http.StatusBadRequest, "bad_target", err.Error())
	case code != http.StatusOK:
		return "", refuse(http.StatusConflict, "transfer_failed", fmt.Sprintf("the target answered %d %s; the call stays where it was", code, reason))
	}
	return state, nil
}

func (d dialer) FinishTransfer(id, how string) error {
	err := d.g.b2b.FinishConsultation(id, how)
	switch {
	case errors.Is(err, b2bua.ErrNoCall):
		return refuse(http.StatusNotFound, "call_not_found", "no call in progress with this id")
	case errors.Is(err, b2bua.ErrNoConsultation):
		return refuse(http.StatusConflict, "no_consultation", "no attended transfer is in progress on this call")
	}
	return err
}
