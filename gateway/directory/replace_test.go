package directory

import (
	"slices"
	"strings"
	"sync"
	"testing"

	"callgate/gateway/config"
	"callgate/sip/digest"
)

func office() config.Config {
	cfg := config.Defaults()
	cfg.Employees = []config.Employee{
		{ID: "ivanov", Extensions: []string{"101", "102"}, SIPPassword: "Phone101pass", ShiftPIN: "1111"},
		{ID: "petrov", Extensions: []string{"103"}, SIPPassword: "Phone103pass", ShiftPIN: "3333"},
		{ID: "sidorova", Extensions: []string{"104"}, SIPPassword: "Phone104pass"},
	}
	cfg.Desks = []config.Desk{{Extension: "110", SIPPassword: "Desk110pass"}, {Extension: "111", SIPPassword: "Desk111pass"},
		{Extension: "112", SIPPassword: "Desk112pass"}}
	return cfg
}

// A reload swaps the people and secrets: a new employee's extension has
// a secret, a removed one's has none, a changed password its new HA1; who
// sits at a desk stays where desk and employee remain, and a removed desk
// or employee frees theirs (told to OnShift).
func TestReplaceKeepsShiftsOfWhatRemains(t *testing.T) {
	cfg := office()
	d := New(&cfg)
	var changes []string
	d.OnShift = func(desk, emp string) { changes = append(changes, desk+"="+emp) }
	for desk, emp := range map[string]string{"110": "ivanov", "111": "petrov", "112": "sidorova"} {
		if err := d.SitAt(desk, emp); err != nil {
			t.Fatal(err)
		}
	}
	changes = nil

	next := office()
	next.Employees = slices.Delete(next.Employees, 1, 2) // petrov leaves
	next.Employees[0].SIPPassword = "NewPass101x"
	next.Employees = append(next.Employees, config.Employee{ID: "kozlov", Extensions: []string{"105"}, SIPPassword: "Phone105pass"})
	next.Desks = next.Desks[:2] // desk 112 goes
	gone := d.Replace(&next)

	if want := []string{"103", "112"}; !slices.Equal(gone, want) {
		t.Fatalf("gone %v, want %v", gone, want)
	}
	if want := "111=,112="; strings.Join(changes, ",") != want {
		t.Fatalf("shift changes %v, want %s", changes, want)
	}
	if e, ok := d.ByExtension("110"); !ok || e.ID != "ivanov" {
		t.Fatalf("desk 110 lost ivanov: %v %v", e, ok)
	}
	if e, ok := d.Employee("ivanov"); !ok || !slices.Equal(e.Extensions, []string{"101", "102", "110"}) {
		t.Fatalf("ivanov's lines %v", e)
	}
	if _, ok := d.ByExtension("111"); ok {
		t.Fatal("desk 111 still belongs to the removed petrov")
	}
	if _, ok := d.Employee("petrov"); ok {
		t.Fatal("petrov is still known")
	}
	if _, ok := d.HA1("103", digest.MD5); ok {
		t.Fatal("petrov's phone still has a secret")
	}
	if _, ok := d.ByPIN("3333"); ok {
		t.Fatal("petrov's PIN still works")
	}
	if d.IsDesk("112") {
		t.Fatal("desk 112 still exists")
	}
	if h, _ := d.HA1("101", digest.MD5); h != digest.HA1(digest.MD5, "101", "callgate", "NewPass101x") {
		t.Fatal("101 keeps its old password")
	}
	if h, ok := d.HA1("105", digest.SHA256); !ok || h != digest.HA1(digest.SHA256, "105", "callgate", "Phone105pass") {
		t.Fatal("the new employee's phone has no secret")
	}
	if err := d.SitAt("111", "kozlov"); err != nil {
		t.Fatalf("the new employee cannot take a desk: %v", err)
	}
	if got := len(d.Desks()); got != 2 {
		t.Fatalf("%d desks, want 2", got)
	}
}

// Readers never see a half-built roster while Replace runs (go test -race).
func TestReplaceWhileReading(t *testing.T) {
	a, b := office(), office()
	b.Employees = b.Employees[:1]
	d := New(&a)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, ok := d.HA1("101", digest.MD5); !ok {
					t.Error("101 lost its secret in a swap")
					return
				}
				_, _ = d.ByExtension("110")
				_, _ = d.Employee("petrov")
				_ = d.Desks()
			}
		}()
	}
	for i := range 200 {
		if i%2 == 0 {
			d.Replace(&b)
		} else {
			d.Replace(&a)
		}
		_ = d.SitAt("110", "ivanov")
	}
	close(stop)
	wg.Wait()
}
