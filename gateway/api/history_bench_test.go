package api

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"callgate/gateway/calls"
	"callgate/gateway/store"
)

// BenchmarkHistoryFirstPage is the server time of the console's history
// page (GET /api/v1/calls?limit=100) over a bbolt store of 10,000 calls
// shared by ten employees, with 1,999 clients calling about 5 times each:
// a manager's page, an employee's own page, and an employee's search by a
// client's number, which reads every employee's calls. Every call carries
// its client's name and company, as calls the CRMs named do.
// go test -run '^$' -bench HistoryFirstPage ./gateway/api
func BenchmarkHistoryFirstPage(b *testing.B) {
	for _, who := range []string{"manager", "employee", "employee-search"} {
		b.Run(who, func(b *testing.B) {
			db, err := store.Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			st := calls.NewStore(db)
			t0 := time.Now().Add(-30 * 24 * time.Hour)
			for i := range 10000 {
				emp := fmt.Sprint("e", i%10)
				at := t0.Add(time.Duration(i) * 4 * time.Minute)
				r := calls.Record{ID: fmt.Sprint("call-", i), Direction: "inbound", Outside: fmt.Sprintf("+7916%07d", i%1999), Caller: "x",
					TrunkNumber: "+74951234567", ClientName: fmt.Sprint("Клиент ", i%1999), ClientCompany: "ООО «Ромашка»", Rung: []string{emp}, AnsweredBy: emp, Started: at, Answered: at.Add(5 * time.Second),
					Ended: at.Add(65 * time.Second), Result: "answered", TalkSeconds: 60, WaitSeconds: 5,
					Legs: []calls.Leg{{N: 1, Employee: emp, Extension: "101", Answered: at.Add(5 * time.Second), Ended: at.Add(65 * time.Second), TalkSeconds: 60, Recording: "2026/11/01/x-1.wav"}}}
				if err := st.Put(&r); err != nil {
					b.Fatal(err)
				}
			}
			s := &Server{Tokens: NewTokens(nil), Calls: st, Sessions: NewSessions(nil, time.Hour, false)}
			p := Principal{Kind: "manager", Name: "boss"}
			query, least := "limit=100", 10000
			if who != "manager" {
				p = Principal{Kind: "employee", Name: "e3"}
			}
			if who == "employee-search" {
				query, least = "limit=100&number=%2B79160000042", 2000 // 5 or 6 calls, several employees'
			}
			h := http.HandlerFunc(s.listCalls) // after auth, which only hashes a cookie
			req := httptest.NewRequest("GET", "/api/v1/calls?"+query, nil)
			b.ResetTimer()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, withPrincipal(req, p))
				if w.Code != 200 || w.Body.Len() < least {
					b.Fatal(w.Code, w.Body.Len())
				}
			}
		})
	}
}
