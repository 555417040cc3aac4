package directory

import (
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
