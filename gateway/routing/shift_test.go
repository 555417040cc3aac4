package routing

import (
	"errors"
	"testing"

	"callgate/gateway/config"
	"callgate/gateway/directory"
	"callgate/sip/b2bua"
	"callgate/sip/registrar"
)

// A wrong desk PIN is an authentication failure (it counts toward the
// phone's ban); a right one, or ending a shift, is not.
func TestShiftPINFailureCounts(t *testing.T) {
	cfg := config.Defaults()
	cfg.Employees = []config.Employee{{ID: "ivanov", Extensions: []string{"101"}, ShiftPIN: "1111"}}
	cfg.Desks = []config.Desk{{Extension: "110", Name: "Reception"}}
	r := New(&cfg, directory.New(&cfg))
	for dialled, want := range map[string]string{"*77*9999": registrar.ReasonWrongPIN, "*77*1111": "", "*77#": ""} {
		_, err := r.Outbound("110", dialled)
		var done *b2bua.FeatureDone
		if !errors.As(err, &done) || done.AuthFailure != want {
			t.Errorf("%s: %v, auth failure %q, want %q", dialled, err, done.AuthFailure, want)
		}
	}
}
