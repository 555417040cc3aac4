package megaplan

import "testing"

// A reload's deal schemes replace those the connector was built with.
func TestSetPrograms(t *testing.T) {
	c := New(Config{Programs: map[string]int{"sales1": 3}}, nil)
	if c.program("sales1") != 3 {
		t.Fatal("the configured scheme is not used")
	}
	c.SetPrograms(map[string]int{"support": 5})
	if c.program("sales1") != 0 || c.program("support") != 5 {
		t.Fatalf("after SetPrograms: sales1 %d, support %d", c.program("sales1"), c.program("support"))
	}
}
