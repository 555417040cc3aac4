package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"callgate/crm"
	"callgate/crm/crmtest"
	"callgate/gateway/tracking/mangotest"
)

// Call tracking. Static: the number dialled names the advertising channel
// in the popup. Dynamic: callgate asks Mango's API (signed, outbound) who
// was shown the number and the popup, the history and the auto-created
// client carry their UTM marks. A hanging Mango API delays neither the call
// nor, once known to hang, the popup.
func TestCallTrackingReachesCRMs(t *testing.T) {
	st, mp := crmStandIns(t)
	mango := mangotest.New("vpbx-key-0123", "vpbx-salt-4567")
	t.Cleanup(mango.Close)
	mango.Bind("74951112233", crm.Marks{Source: "yandex", Medium: "cpc", Campaign: "winter-sale", Page: "https://shop.example.ru/sale"})
	o := crmOffice(t, st, mp, fmt.Sprintf(`[[upstream.account]]
user = "support"
password = "Secret456"
employee = "ivanov"
number = "+74951112233"
source = "Яндекс.Директ"
tracking = "static"
autocreate = "contact"
[mango]
url = "%s/vpbx/"
api_key = "vpbx-key-0123"
api_salt = "vpbx-salt-4567"
budget = "500ms"
`, mango.URL), "")
	o.d.waitMetric(`callgate_upstream_registered{account="support"}`, 1, 10*time.Second)
	ctx := withTimeout(t, 60*time.Second)
	popup := func(phone string) crmtest.RetailEvent {
		var ev crmtest.RetailEvent
		o.d.waitFor("the popup for "+phone, 10*time.Second, func() bool {
			for _, e := range st.Events() {
				if e.Phone == phone && e.Type == "in" {
					ev = e
					return true
				}
			}
			return false
		})
		return ev
	}

	o.shortCall(ctx, "support", "79161234567")
	if w := popup("79161234567").WebAnalytics; w == nil || w.Campaign.Name != "Яндекс.Директ" || w.Campaign.Code != "+74951112233" ||
		!strings.Contains(w.QueryString, "utm_source=") {
		t.Fatalf("static tracking in the popup: %+v", w)
	}
	if n, _ := mango.Requests(); n != 0 {
		t.Fatal("Mango was asked about a static number")
	}

	o.d.stop()
	o.d.cfg.Extra = strings.Replace(o.d.cfg.Extra, `tracking = "static"`, `tracking = "dynamic"`, 1)
	o.d = startDaemon(t, o.d.cfg)
	o.d.waitMetric(`callgate_upstream_registered{account="support"}`, 1, 10*time.Second)
	for _, ext := range []string{"101", "102", "103"} {
		mustRegister(t, o.phones[ext])
	}
	o.shortCall(ctx, "support", "79162222222")
	w := popup("79162222222").WebAnalytics
	if w == nil || w.Campaign.Name != "winter-sale" || !strings.Contains(w.QueryString, "utm_medium=cpc") || !strings.Contains(w.QueryString, "utm_source=yandex") {
		t.Fatalf("dynamic tracking in the popup: %+v", w)
	}
	if rec := o.lastCall(); rec.Tracking == nil || rec.Tracking.Source != "yandex" || rec.Tracking.Page != "https://shop.example.ru/sale" || !rec.Tracking.Dynamic {
		t.Fatalf("history tracking %+v", rec.Tracking)
	}
	o.d.waitFor("the client in Megaplan", 10*time.Second, func() bool {
		for _, k := range mp.Contractors() {
			if k.ContactInfo[0].Value == "+79162222222" && strings.Contains(k.Description, "utm_source=yandex") {
				return true
			}
		}
		return false
	})
	if _, refused := mango.Requests(); refused != 0 {
		t.Fatalf("Mango refused %d requests (key or signature)", refused)
	}

	mango.SetSlow(3 * time.Second)
	for _, from := range []string{"79163333333", "79164444444"} {
		if rang := o.shortCall(ctx, "support", from); rang > 200*time.Millisecond {
			t.Fatalf("with Mango hanging the phone rang %s after the INVITE", rang)
		}
		if w := popup(from).WebAnalytics; w == nil || w.Campaign.Code != "+74951112233" {
			t.Fatalf("popup without the visitor: %+v", w)
		}
	}
}
