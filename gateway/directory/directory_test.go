package directory

import (
	"strings"
	"testing"

	"callgate/gateway/config"
	"callgate/sip/digest"
)

func TestDirectory(t *testing.T) {
	cfg := config.Defaults()
	cfg.Employees = []config.Employee{{ID: "ivanov", Name: "Иванов", Extensions: []string{"101", "102"}, SIPPassword: "Phone101pass"}}
	d := New(&cfg)
	if e, ok := d.ByExtension("102"); !ok || e.ID != "ivanov" {
		t.Fatalf("ByExtension = %v %v", e, ok)
	}
	if _, ok := d.Employee("petrov"); ok {
		t.Fatal("unknown employee found")
	}
	h, ok := d.HA1("101", digest.SHA256)
	if !ok || h != digest.HA1(digest.SHA256, "101", "callgate", "Phone101pass") {
		t.Fatal("wrong SHA-256 HA1")
	}
	if h, _ := d.HA1("101", digest.MD5); h != digest.HA1(digest.MD5, "101", "callgate", "Phone101pass") {
		t.Fatal("wrong MD5 HA1")
	}
	if _, ok := d.HA1("999", digest.MD5); ok {
		t.Fatal("unknown extension has a secret")
	}
}

func TestDeskFollowsTheShift(t *testing.T) {
	cfg := config.Defaults()
	cfg.Employees = []config.Employee{
		{ID: "ivanov", Extensions: []string{"101"}, SIPPassword: "Phone101pass", ShiftPIN: "1111"},
		{ID: "petrov", Extensions: []string{"103"}, SIPPassword: "Phone103pass"},
	}
	cfg.Desks = []config.Desk{{Extension: "110", Name: "Ресепшн", SIPPassword: "Desk110pass"}, {Extension: "111", SIPPassword: "Desk111pass"}}
	d := New(&cfg)
	var changes []string
	d.OnShift = func(desk, emp string) { changes = append(changes, desk+"="+emp) }
	if _, ok := d.ByExtension("110"); ok {
		t.Fatal("a free desk belongs to someone")
	}
	if h, ok := d.HA1("110", digest.MD5); !ok || h != digest.HA1(digest.MD5, "110", "callgate", "Desk110pass") {
		t.Fatal("the desk phone cannot register with its own password")
	}
	if id, ok := d.ByPIN("1111"); !ok || id != "ivanov" {
		t.Fatal("PIN")
	}
	_ = d.SitAt("110", "ivanov")
	if e, _ := d.Employee("ivanov"); len(e.Extensions) != 2 || e.Extensions[1] != "110" {
		t.Fatalf("ivanov's lines %v", e.Extensions)
	}
	if e, ok := d.ByExtension("110"); !ok || e.ID != "ivanov" {
		t.Fatal("the desk is not ivanov's")
	}
	_ = d.SitAt("111", "ivanov") // moving leaves the first desk
	_ = d.SitAt("111", "petrov") // and taking a desk takes it from its holder
	if e, _ := d.Employee("ivanov"); len(e.Extensions) != 1 {
		t.Fatalf("ivanov kept %v", e.Extensions)
	}
	if err := d.Leave("111", "ivanov"); err != nil || d.Desks()[1].Employee != "petrov" {
		t.Fatal("someone else's logout freed petrov's desk")
	}
	_ = d.Leave("111", "")
	want := "110=ivanov,110=,111=ivanov,111=petrov,111="
	if strings.Join(changes, ",") != want {
		t.Fatalf("changes %v, want %s", changes, want)
	}
	if err := d.SitAt("999", "ivanov"); err != ErrNoDesk {
		t.Fatal(err)
	}
	d2 := New(&cfg)
	d2.Restore("110", "petrov")
	if e, ok := d2.ByExtension("110"); !ok || e.ID != "petrov" {
		t.Fatal("restore")
	}
}
