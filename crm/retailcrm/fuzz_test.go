package retailcrm

import (
	"context"
	"errors"
	"testing"
	"time"

	"callgate/crm"
	"callgate/crm/crmtest"
	"callgate/crm/outbox"

	"golang.org/x/time/rate"
)

// FuzzResponses answers every request of the connector with arbitrary
// bytes and status: decoding RetailCRM's answers (errors, customers,
// orders, managers, batch uploads) must never panic, and every delivery
// error must be classified for the outbox, so nothing is lost or retried
// forever by mistake.
func FuzzResponses(f *testing.F) {
	f.Add(200, []byte(`{"success":true,"manager":{"id":7}}`), "")
	f.Add(200, []byte(`{"success":true,"customers":[{"id":1,"firstName":"Anna","phones":[{"number":"+79161234567"}],"managerId":7,"site":"shop"}],"pagination":{"totalCount":1}}`), "")
	f.Add(200, []byte(`{"success":true,"orders":[{"id":5,"number":"5A","status":"new","totalSumm":1e308,"site":"shop"}]}`), "")
	f.Add(200, []byte(`{"success":true,"customersCorporate":[{"id":3,"nickName":"ООО Ромашка","mainCompany":{"id":4,"name":"Ромашка"}},{"mainCompany":null}]}`), "")
	f.Add(400, []byte(`{"success":false,"errorMsg":"Errors in the input parameters","errors":{"calls[0][phone]":"bad"}}`), "")
	f.Add(429, []byte(`{"success":false,"errorMsg":"Rate limit"}`), "1")
	f.Add(403, []byte(`{"success":false,"errorMsg":"Wrong \"apiKey\" value."}`), "")
	f.Add(503, []byte(`<html>Bad gateway</html>`), "Wed, 21 Oct 2015 07:28:00 GMT")
	f.Add(200, []byte(`{"success":true,"customers":[null,{"phones":null}],"orders":{}}`), "-5")
	f.Add(200, []byte(``), "")
	f.Fuzz(func(t *testing.T, status int, body []byte, retryAfter string) {
		rt := &crmtest.Replay{Status: status, Body: body, RetryAfter: retryAfter}
		c := New(Config{URL: "https://shop.retailcrm.example", APIKey: key, Site: "shop", ModuleCode: "callgate",
			PublicURL: "https://callgate.example.ru", ClientID: "client-123",
			Users: map[string]int{"101": 7, "103": 9}, ExternalPhones: []string{"+74951234567"}}, nil)
		c.http.Transport = rt
		c.general, c.telephony = rate.NewLimiter(rate.Inf, 1), rate.NewLimiter(rate.Inf, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()

		_, _ = c.Manager(ctx, "+79161234567")
		_, _ = c.Client(ctx, "+79161234567")
		call := answered()
		items := append(c.Items(crm.Event{Kind: crm.Ringing, Call: call}), c.Items(crm.Event{Kind: crm.Ended, Call: call})...)
		for i := range items {
			it := &items[i]
			it.Created = time.Now()
			err := c.Deliver(ctx, it)
			var tmp *outbox.Temporary
			var perm *outbox.Permanent
			if err != nil && !errors.As(err, &tmp) && !errors.As(err, &perm) {
				t.Fatalf("%s: unclassified error %T: %v", it.Kind, err, err)
			}
		}
		if rt.Requests.Load() == 0 {
			t.Fatal("no request reached the CRM")
		}
	})
}
