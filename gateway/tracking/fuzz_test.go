package tracking_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"callgate/crm/crmtest"
	"callgate/gateway/tracking"
)

// FuzzVisitor decodes whatever Mango's user_info_by_dct_number might
// answer: never a panic, and no visitor without an answer of 200.
func FuzzVisitor(f *testing.F) {
	f.Add(200, []byte(`{"result":1000,"data":{"uid":"123","channel":{"source":"yandex","medium":"cpc","campaign":"spring","content":"ad1","term":"call"},"current_page":{"url":"https://shop.example/sale"}}}`))
	f.Add(200, []byte(`{"uid":42,"channel":{"source":"google"}}`))
	f.Add(200, []byte(`{"result":3102,"message":"number not bound"}`))
	f.Add(401, []byte(`{"code":3102,"message":{"ru":"неверная подпись"}}`))
	f.Add(200, []byte(`{"data":null}`))
	f.Add(200, []byte(`[1,2,3]`))
	f.Add(500, []byte(``))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		rt := &crmtest.Replay{Status: status, Body: body}
		m := &tracking.Mango{URL: "https://app.mango.example/vpbx/", Key: "vpbx-key", Salt: "salt", HTTP: &http.Client{Transport: rt}}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		v, err := m.Visitor(ctx, "+74951234567")
		if err == nil && v != nil && (status >= 100 && status <= 999 && status != http.StatusOK) {
			t.Fatalf("visitor %+v from a %d answer", v, status)
		}
		if rt.Requests.Load() != 1 {
			t.Fatalf("%d requests for one lookup", rt.Requests.Load())
		}
	})
}
