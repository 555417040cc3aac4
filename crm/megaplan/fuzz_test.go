package megaplan

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"callgate/crm"
	"callgate/crm/crmtest"
	"callgate/crm/outbox"
)

// FuzzResponses answers every request of the connector (the token grant
// included) with the same arbitrary bytes and status: decoding Megaplan's
// envelope, errors, contractors, routes and tokens must never panic, and
// every delivery error must be classified for the outbox.
func FuzzResponses(f *testing.F) {
	tok := `"access_token":"tok","refresh_token":"ref","expires_in":3600,`
	f.Add(200, []byte(`{`+tok+`"meta":{"status":200},"data":[{"contentType":"ContractorHuman","id":"1","firstName":"A","company":{"contentType":"ContractorCompany","id":"2","name":"Ромашка"}},{"company":null}]}`), "")
	f.Add(200, []byte(`{`+tok+`"meta":{"status":200},"data":[{"contentType":"Deal","id":"5","number":"5","name":"x","state":{"contentType":"ProgramState","type":"active"}},{"state":null}]}`), "")
	f.Add(200, []byte(`{`+tok+`"meta":{"status":200,"errors":[]},"data":{"contentType":"CallInfo","id":"17"}}`), "")
	f.Add(200, []byte(`{`+tok+`"meta":{"status":200},"data":[{"contentType":"ContractorHuman","id":"1000123","firstName":"Anna","responsibles":[{"id":"1000007"}]}]}`), "")
	f.Add(200, []byte(`{`+tok+`"data":{"type":"responsible","employees":[{"contentType":"Employee","id":"1000007"}]}}`), "")
	f.Add(401, []byte(`{"meta":{"status":401,"errors":[{"fields":null,"message":"Unauthorized"}]},"data":null}`), "")
	f.Add(422, []byte(`{`+tok+`"meta":{"status":422,"errors":[{"fields":["phone"],"message":"bad phone"}]}}`), "")
	f.Add(429, []byte(`{`+tok+`"meta":{"status":429,"errors":[{"message":"Too many requests"}]}}`), "3")
	f.Add(200, []byte(`{`+tok+`"data":"not an object"}`), "")
	f.Add(200, []byte(`{"access_token":"","expires_in":-1}`), "")
	f.Add(502, []byte(`<html>nginx</html>`), "")
	f.Fuzz(func(t *testing.T, status int, body []byte, retryAfter string) {
		rt := &crmtest.Replay{Status: status, Body: body, RetryAfter: retryAfter}
		c := New(Config{URL: "https://office.megaplan.example", Username: "api@office", Password: "secret", RPS: 1e9,
			Programs: map[string]int{"sales1": 7}}, &http.Client{Transport: rt, Timeout: 5 * time.Second})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()

		_, _ = c.Responsible(ctx, "+79161234567")
		_, _ = c.Client(ctx, "+79161234567")
		call := answered("fz")
		call.Autocreate = "contact+deal"
		items := append(c.Items(crm.Event{Kind: crm.Ringing, Call: call}), c.Items(crm.Event{Kind: crm.Ended, Call: call})...)
		for i := range items {
			it := &items[i]
			it.Created = time.Now()
			err := c.Deliver(ctx, it)
			var tmp *outbox.Temporary
			var perm *outbox.Permanent
			if err != nil && !errors.As(err, &tmp) && !errors.As(err, &perm) && !errors.Is(err, errNotFound) {
				t.Fatalf("%s: unclassified error %T: %v", it.Kind, err, err)
			}
		}
		if rt.Requests.Load() == 0 {
			t.Fatal("no request reached the CRM")
		}
	})
}
