// Package dialer places and steers calls on request of the API and the
// CRMs: a click-to-call from the employee's first registered, free line,
// transfers, hang-ups. It answers in the API's terms (api.DialError), so
// the console, the API and RetailCRM's makeCallUrl refuse alike.
package dialer

import (
	"errors"
	"fmt"
	"net/http"
	"slices"

	"callgate/gateway/api"
	"callgate/gateway/directory"
	"callgate/sip/b2bua"
)

// Calls is what the dialer asks of the B2BUA.
type Calls interface {
	Busy(extension string) bool
	ClickToCall(b2bua.ClickToCall) (string, error)
	HangupByAPI(id string) bool
	Transfer(id, target, mode string) (int, string, error)
	ConsultTransfer(id, target string) (int, string, error)
	FinishConsultation(id, how string) error
}

// Router chooses the upstream account and number of a click-to-call under
// the dial rules.
type Router interface {
	ClickToCall(employee, number, fromNumber string) (b2bua.OutboundRoute, string, error)
}

// Directory finds employees.
type Directory interface {
	Employee(id string) (*directory.Employee, bool)
}

// Dialer implements api.Dialer.
type Dialer struct {
	// Calls places and steers the calls (the B2BUA).
	Calls Calls
	// Router applies the dial rules and picks the upstream account.
	Router Router
	// Directory has the employees and their lines.
	Directory Directory
	// Registered reports whether an extension has a device registered.
	Registered func(extension string) bool
	// UpstreamRegistered reports whether an upstream account is
	// registered with the VPBX.
	UpstreamRegistered func(account string) bool
}

// outgoingDisplay is the caller name a phone shows for a click-to-call, so
// the employee knows it is an outgoing call to the number shown.
const outgoingDisplay = "Исходящий вызов"

func refuse(status int, code, msg string) error {
	return &api.DialError{Status: status, Code: code, Message: msg}
}

// ClickToCall rings the employee's line and, once they answer, calls the
// number.
func (d *Dialer) ClickToCall(req api.ClickToCallRequest) (string, error) {
	emp, ok := d.Directory.Employee(req.Employee)
	if !ok {
		return "", refuse(http.StatusNotFound, "unknown_employee", "no employee with this id")
	}
	route, e164, err := d.Router.ClickToCall(emp.ID, req.Number, req.FromNumber)
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
	if !d.UpstreamRegistered(route.Account.User) {
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
	for _, ext := range lines {
		if !d.Registered(ext) {
			continue
		}
		if registered == "" {
			registered = ext
		}
		if !d.Calls.Busy(ext) {
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
	id, err := d.Calls.ClickToCall(b2bua.ClickToCall{Line: b2bua.Target{Extension: free, Employee: emp.ID},
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

// Hangup ends a call.
func (d *Dialer) Hangup(id string) bool { return d.Calls.HangupByAPI(id) }

// Transfer moves a connected call to another employee, extension or number
// (blind), or starts a consultation with them (attended).
func (d *Dialer) Transfer(id, to, mode string) (string, error) {
	var (
		code   int
		reason string
		err    error
		state  = "transferred"
	)
	if mode == "attended" {
		code, reason, err = d.Calls.ConsultTransfer(id, to)
		state = "consulting"
	} else {
		code, reason, err = d.Calls.Transfer(id, to, mode)
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

// FinishTransfer completes or cancels an attended transfer's consultation.
func (d *Dialer) FinishTransfer(id, how string) error {
	err := d.Calls.FinishConsultation(id, how)
	switch {
	case errors.Is(err, b2bua.ErrNoCall):
		return refuse(http.StatusNotFound, "call_not_found", "no call in progress with this id")
	case errors.Is(err, b2bua.ErrNoConsultation):
		return refuse(http.StatusConflict, "no_consultation", "no attended transfer is in progress on this call")
	}
	return err
}
