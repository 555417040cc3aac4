package b2bua

import (
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestOutsideNumberFromOtherCarriers(t *testing.T) {
	cases := []struct {
		name, from string
		headers    []sip.Header
		want       string
	}{
		{"plain", `<sip:79161234567@vpbx.mangosip.ru>;tag=1`, nil, "79161234567"},
		{"user parameters", `<sip:+74951234567;cpc=ordinary@sip.carrier.ru>;tag=1`, nil, "+74951234567"},
		{"login with P-Asserted-Identity", `<sip:op17@sip.carrier.ru>;tag=1`,
			[]sip.Header{sip.NewHeader("P-Asserted-Identity", `"Office" <tel:+7-495-765-43-21>`)}, "+74957654321"},
		{"login with Remote-Party-ID", `<sip:trunk-a@sip.carrier.ru>;tag=1`,
			[]sip.Header{sip.NewHeader("Remote-Party-ID", `<sip:84957654321@sip.carrier.ru>;party=calling;screen=yes`)}, "84957654321"},
		{"number in the display name", `"+7 (495) 111-22-33" <sip:anonymous-7@sip.carrier.ru>;tag=1`, nil, "+74951112233"},
		{"nothing numeric", `<sip:operator@sip.carrier.ru>;tag=1`, nil, "operator"},
		{"too short", `"12" <sip:ab@x>;tag=1`, nil, "ab"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "sales1", Host: "127.0.0.1"})
			req.AppendHeader(sip.NewHeader("From", tc.from))
			for _, h := range tc.headers {
				req.AppendHeader(h)
			}
			raw := req.String()
			parsed, err := sip.ParseMessage([]byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			if got := outsideNumber(parsed.(*sip.Request)); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
