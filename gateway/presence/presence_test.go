package presence

import "testing"

func TestStatuses(t *testing.T) {
	var p Presence
	if p.Away("ivanov") || p.Status("ivanov") != Free {
		t.Fatal("an employee nobody set is not free")
	}
	for _, s := range []string{Busy, Dinner, Break} {
		if err := p.Set("ivanov", s); err != nil || !p.Away("ivanov") || p.Status("ivanov") != s {
			t.Fatalf("%s: %v, away %v", s, err, p.Away("ivanov"))
		}
	}
	if p.Away("petrov") {
		t.Fatal("one employee's status changed another's")
	}
	if err := p.Set("ivanov", Free); err != nil || p.Away("ivanov") {
		t.Fatalf("free again: %v", err)
	}
	if err := p.Set("ivanov", "vacation"); err == nil || p.Away("ivanov") {
		t.Fatalf("an unknown status was taken: %v", err)
	}
}

// A status set in the console is kept and told to the CRMs; a bad one is
// neither.
func TestToldKeepsThenTells(t *testing.T) {
	var told []string
	p := &Told{Presence: &Presence{}, Tell: func(e, s string) error { told = append(told, e+"="+s); return nil }}
	if err := p.Set("ivanov", Dinner); err != nil || !p.Away("ivanov") || len(told) != 1 || told[0] != "ivanov=dinner" {
		t.Fatalf("set: %v, told %v", err, told)
	}
	if err := p.Set("ivanov", "vacation"); err == nil || len(told) != 1 {
		t.Fatalf("a bad status: %v, told %v", err, told)
	}
}

// memStore is the database's state marks.
type memStore map[string][]byte

func (m memStore) State(name string) ([]byte, error)        { return m[name], nil }
func (m memStore) SetState(name string, value []byte) error { m[name] = value; return nil }

// Statuses survive a restart: a new Presence keeping the same store reads
// back those of the employees it is given (an unknown value reads free).
func TestStatusesKeptAcrossRestarts(t *testing.T) {
	st := memStore{"presence.sidorov": []byte("vacation")}
	var before Presence
	if err := before.Keep(st, nil); err != nil {
		t.Fatal(err)
	}
	_ = before.Set("ivanov", Dinner)
	_ = before.Set("petrov", Break)
	_ = before.Set("petrov", Free)
	var after Presence
	if err := after.Keep(st, []string{"ivanov", "petrov", "sidorov"}); err != nil {
		t.Fatal(err)
	}
	if after.Status("ivanov") != Dinner || after.Status("petrov") != Free || after.Status("sidorov") != Free {
		t.Fatalf("after the restart: ivanov %s, petrov %s, sidorov %s", after.Status("ivanov"), after.Status("petrov"), after.Status("sidorov"))
	}
}
