package routing

import (
	"errors"
	"testing"

	"callgate/gateway/config"
	"callgate/gateway/directory"
)

func TestNormalize(t *testing.T) {
	for _, in := range []string{"8 916 123-45-67", "+7 (916) 123 45 67", "79161234567", "89161234567", "+79161234567"} {
		got, err := Normalize(in, "RU")
		if err != nil || got != "+79161234567" {
			t.Errorf("%q -> %q %v", in, got, err)
		}
	}
	if got, err := Normalize("(495) 123-45-67", "RU"); err != nil || got != "+74951234567" {
		t.Errorf("local Moscow number -> %q %v", got, err)
	}
	for _, bad := range []string{"", "abc", "12", "+", "999999999999999999999999999999999"} {
		if _, err := Normalize(bad, "RU"); !errors.Is(err, ErrInvalidNumber) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRoutes(t *testing.T) {
	cfg := config.Defaults()
	cfg.Employees = []config.Employee{{ID: "ivanov", Extensions: []string{"101", "102"}}, {ID: "petrov", Extensions: []string{"103"}}}
	cfg.Upstream.Accounts = []config.Account{{User: "sales1", Password: "x", Employee: "ivanov"}, {User: "sales2", Password: "y", Employee: "petrov"}}
	r := New(&cfg, directory.New(&cfg))
	in, err := r.Inbound("sales1", "79161234567")
	if err != nil || len(in.Steps) != 1 || len(in.Steps[0]) != 2 || in.Steps[0][1].Extension != "102" || in.Steps[0][0].Employee != "ivanov" {
		t.Fatalf("inbound %+v %v", in, err)
	}
	cfg.Groups = []config.Group{{ID: "sales", Strategy: "sequential", Members: []string{"petrov", "ivanov"}, RingTimeout: config.Duration(5e9)}}
	cfg.Upstream.Accounts = append(cfg.Upstream.Accounts, config.Account{User: "line", Password: "z", Group: "sales"})
	r = New(&cfg, directory.New(&cfg))
	seq, err := r.Inbound("line", "1")
	if err != nil || len(seq.Steps) != 2 || seq.Steps[0][0].Employee != "petrov" || len(seq.Steps[1]) != 2 || seq.RingTimeout != 5e9 {
		t.Fatalf("sequential group %+v %v", seq, err)
	}
	if _, err := r.Inbound("nobody", "1"); err == nil {
		t.Fatal("unknown account routed")
	}
	out, err := r.Outbound("103", "8 (916) 123-45-67")
	if err != nil || out.Internal || out.Number != "79161234567" || out.Account.User != "sales2" {
		t.Fatalf("outbound %+v %v", out, err)
	}
	internal, err := r.Outbound("101", "103")
	if err != nil || !internal.Internal || internal.Target.Employee != "petrov" {
		t.Fatalf("internal %+v %v", internal, err)
	}
	if _, err := r.Outbound("101", "hello"); err == nil {
		t.Fatal("invalid number routed")
	}
}

// An employee away in their CRM (busy, dinner, break) is passed by: a group
// rings the others, the responsible manager does not ring first, and an
// account whose only employee is away rings nobody.
func TestInboundPassesEmployeesWhoAreAway(t *testing.T) {
	cfg := config.Defaults()
	cfg.Employees = []config.Employee{{ID: "ivanov", Extensions: []string{"101", "102"}}, {ID: "petrov", Extensions: []string{"103"}}}
	cfg.Groups = []config.Group{{ID: "sales", Members: []string{"ivanov", "petrov"}}}
	cfg.Upstream.Accounts = []config.Account{{User: "sales1", Password: "x", Employee: "ivanov"}, {User: "line", Password: "z", Group: "sales"}}
	r := New(&cfg, directory.New(&cfg))
	away := map[string]bool{"ivanov": true}
	r.Away = func(e string) bool { return away[e] }
	r.Responsible, r.ResponsibleTimeout = func(string) string { return "ivanov" }, 5e9
	in, err := r.Inbound("line", "79161234567")
	if err != nil || len(in.Steps) != 1 || len(in.Steps[0]) != 1 || in.Steps[0][0].Employee != "petrov" {
		t.Fatalf("the group with ivanov away: %+v %v", in, err)
	}
	if _, err := r.Inbound("sales1", "79161234567"); err == nil {
		t.Fatal("an account whose employee is away still rang them")
	}
	away["ivanov"] = false
	in, err = r.Inbound("line", "79161234567")
	if err != nil || len(in.Steps) != 2 || in.Steps[0][0].Employee != "ivanov" || len(in.Steps[1]) != 3 {
		t.Fatalf("ivanov back: %+v %v", in, err)
	}
}
