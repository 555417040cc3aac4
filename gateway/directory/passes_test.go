package directory

import (
	"errors"
	"slices"
	"testing"
	"time"

	"callgate/gateway/config"
	"callgate/sip/digest"
)

func TestBrowserPhonePasses(t *testing.T) {
	cfg := config.Defaults()
	cfg.Employees = []config.Employee{{ID: "ivanov", Extensions: []string{"101", "102"}, SIPPassword: "Phone101pass"}}
	d := New(&cfg)
	now := time.Now()
	p, err := d.MintPass("ivanov", "", "s1", time.Hour, now)
	if err != nil || p.Extension != "101" || len(p.Password) < 20 || p.Realm != "callgate" {
		t.Fatalf("pass = %+v, %v", p, err)
	}
	if p.Password == "Phone101pass" {
		t.Fatal("the pass is the SIP password")
	}
	has := func(ext, pw string, alg digest.Algorithm) bool {
		want := digest.HA1(alg, ext, "callgate", pw)
		return slices.ContainsFunc(d.AlternateHA1s(ext, alg), func(a digest.Alternate) bool { return a.HA1 == want })
	}
	if !has("101", p.Password, digest.MD5) || !has("101", p.Password, digest.SHA256) {
		t.Fatal("the pass does not authenticate 101")
	}
	if alts := d.AlternateHA1s("101", digest.MD5); len(alts) != 1 || alts[0].Tag != "s1" {
		t.Fatalf("alternates %+v, want one tagged with its session", alts)
	}
	if has("102", p.Password, digest.MD5) {
		t.Fatal("the pass authenticates the second line too")
	}
	// The session asks again (a renewal, or a second tab of the same
	// login): both passes stay good; another session's too.
	p2, _ := d.MintPass("ivanov", "", "s1", time.Hour, now)
	p3, _ := d.MintPass("ivanov", "", "s2", time.Hour, now)
	if !has("101", p.Password, digest.MD5) || !has("101", p2.Password, digest.MD5) || !has("101", p3.Password, digest.MD5) {
		t.Fatal("a pass of one tab ended when the session or another session asked again")
	}
	d.RevokePasses("s1")
	if has("101", p.Password, digest.MD5) || has("101", p2.Password, digest.MD5) || !has("101", p3.Password, digest.MD5) {
		t.Fatal("logout did not end the session's passes only")
	}
	// An expired pass authenticates nothing.
	old, _ := d.MintPass("ivanov", "", "s3", time.Millisecond, now.Add(-time.Second))
	if has("101", old.Password, digest.MD5) {
		t.Fatal("an expired pass authenticates")
	}
	if _, err := d.MintPass("nobody", "", "s4", time.Hour, now); err == nil {
		t.Fatal("a pass for an unknown employee")
	}
	// Many sessions: the newest few are kept.
	for i := range 20 {
		d.MintPass("ivanov", "", string(rune('a'+i)), time.Hour, now)
	}
	if n := len(d.AlternateHA1s("101", digest.MD5)); n != maxPassesPerExtension {
		t.Fatalf("%d passes kept", n)
	}
	// The second line, chosen: its pass authenticates it and not the first.
	l2, err := d.MintPass("ivanov", "102", "s5", time.Hour, now)
	if err != nil || l2.Extension != "102" || !slices.Equal(l2.Lines, []string{"101", "102"}) || !has("102", l2.Password, digest.MD5) || has("101", l2.Password, digest.MD5) {
		t.Fatalf("second line: %+v, %v", l2, err)
	}
	// Someone else's extension is refused.
	if _, err := d.MintPass("ivanov", "103", "s5", time.Hour, now); !errors.Is(err, ErrNoLine) {
		t.Fatalf("a pass for another's extension: %v", err)
	}
	// An extension removed by a reload has no passes.
	cfg.Employees[0].Extensions = []string{"103"}
	d.Replace(&cfg)
	if len(d.AlternateHA1s("101", digest.MD5)) != 0 {
		t.Fatal("a removed extension keeps its passes")
	}
}
