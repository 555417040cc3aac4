package tracking_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"callgate/crm"
	"callgate/gateway/tracking"
	"callgate/gateway/tracking/mangotest"
)

func TestVisitorFromMango(t *testing.T) {
	st := mangotest.New("vpbx-key-123", "salt-456")
	defer st.Close()
	st.Bind("74951112233", crm.Marks{Source: "yandex", Medium: "cpc", Campaign: "winter", Term: "купить", Page: "https://shop.example.ru/sale"})
	m := &tracking.Mango{URL: st.URL + "/vpbx/", Key: "vpbx-key-123", Salt: "salt-456"}
	v, err := m.Visitor(context.Background(), "+74951112233")
	if err != nil || v == nil || v.Source != "yandex" || v.Medium != "cpc" || v.Campaign != "winter" || v.Term != "купить" || v.Page != "https://shop.example.ru/sale" {
		t.Fatalf("visitor %+v, %v", v, err)
	}
	if v, err := m.Visitor(context.Background(), "+74950000000"); err != nil || v != nil {
		t.Fatalf("unbound number: %+v, %v", v, err)
	}
	bad := &tracking.Mango{URL: st.URL + "/vpbx/", Key: "vpbx-key-123", Salt: "wrong"}
	if _, err := bad.Visitor(context.Background(), "+74951112233"); err == nil || !strings.Contains(err.Error(), "3102") {
		t.Fatalf("wrong salt: %v", err)
	}
	if _, refused := st.Requests(); refused != 1 {
		t.Fatalf("%d refused, want the wrongly signed one", refused)
	}
}

// A slow or failing API costs a popup at most the budget once, then nothing
// while it stays in trouble; a fast one is waited for.
func TestTrackerNeverWaitsLongerThanTheBudget(t *testing.T) {
	st := mangotest.New("k", "s")
	defer st.Close()
	st.Bind("74951112233", crm.Marks{Source: "google"})
	m := &tracking.Mango{URL: st.URL + "/vpbx/", Key: "k", Salt: "s"}
	tr := tracking.NewTracker(m.Visitor, 200*time.Millisecond)
	tr.Start("c1", "+74951112233")
	if v := tr.Wait("c1"); v == nil || v.Source != "google" {
		t.Fatalf("visitor %+v", v)
	}
	st.SetSlow(2 * time.Second)
	tr.Start("c2", "+74951112233")
	start := time.Now()
	if v := tr.Wait("c2"); v != nil || time.Since(start) > 400*time.Millisecond {
		t.Fatalf("waited %s for a hanging API (visitor %+v)", time.Since(start), v)
	}
	tr.Start("c3", "+74951112233")
	start = time.Now()
	if tr.Wait("c3"); time.Since(start) > 50*time.Millisecond {
		t.Fatalf("waited %s for an API known to hang", time.Since(start))
	}
	if v := tr.Wait("unknown"); v != nil {
		t.Fatalf("a call without a lookup has a visitor: %+v", v)
	}
}
