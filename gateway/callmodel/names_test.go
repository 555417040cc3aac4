package callmodel

import (
	"context"
	"testing"
	"time"

	"callgate/crm"
	"callgate/gateway/calls"
	"callgate/gateway/store"
	"callgate/sip/b2bua"
)

// finder answers lookups with a client per number once release is closed
// (or at once when it is nil).
type finder struct {
	clients map[string]*crm.Client
	release chan struct{}
	asked   chan string
}

func (f *finder) find(ctx context.Context, phone string) (*crm.Client, error) {
	f.asked <- phone
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return f.clients[phone], nil
}

func namingModel(t *testing.T, f *finder) (*Model, *calls.Store) {
	t.Helper()
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := calls.NewStore(db)
	m := New(Config{Store: st, Region: "RU", Clients: f.find})
	t.Cleanup(func() {
		m.Close()
		_ = db.Close()
	})
	return m, st
}

// waitRecord polls the store until want holds for the call's record.
func waitRecord(t *testing.T, st *calls.Store, id string, want func(*calls.Record) bool) *calls.Record {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := st.Get(id)
		if err == nil && want(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("record %s: %+v (%v)", id, r, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A call's record carries the client's name and company as a CRM knew them
// when it rang: an answer before the call ends lands on the record with its
// next event; an answer after the end is written onto the final record,
// which keeps everything else it had; a customer the CRM knows only by the
// number names nobody; an outbound call is named like an inbound one.
func TestCallsNamedFromTheCRM(t *testing.T) {
	anna := &crm.Client{CRM: "retailcrm", Name: "Анна Смирнова", Company: "ООО «Ромашка»"}
	f := &finder{clients: map[string]*crm.Client{
		"+79161234567": anna,
		"+79160000001": {CRM: "retailcrm", Name: "+79160000001"},
	}, asked: make(chan string, 8)}
	m, st := namingModel(t, f)
	ended := func(e *b2bua.Event) {
		e.Result, e.HangupBy, e.Rung = b2bua.ResultNoAnswer, "outside", []b2bua.Target{ivanov}
	}

	// Answered before the end.
	m.CallEvent(at(inbound, 0, b2bua.EventRinging, func(e *b2bua.Event) { e.Rung = []b2bua.Target{ivanov} }))
	if got := <-f.asked; got != "+79161234567" {
		t.Fatalf("asked the CRMs for %q, want the normalised number", got)
	}
	time.Sleep(50 * time.Millisecond) // the finder answers at once
	m.CallEvent(at(inbound, 5, b2bua.EventEnded, ended))
	r := waitRecord(t, st, "c1", func(r *calls.Record) bool { return !r.Ended.IsZero() })
	if r.ClientName != "Анна Смирнова" || r.ClientCompany != "ООО «Ромашка»" {
		t.Fatalf("named before the end: %q / %q", r.ClientName, r.ClientCompany)
	}

	// Answered after the end.
	f.release = make(chan struct{})
	late := inbound
	late.CallID = "c-late"
	m.CallEvent(at(late, 10, b2bua.EventRinging, func(e *b2bua.Event) { e.Rung = []b2bua.Target{ivanov} }))
	<-f.asked
	m.CallEvent(at(late, 12, b2bua.EventEnded, ended))
	waitRecord(t, st, "c-late", func(r *calls.Record) bool { return !r.Ended.IsZero() && r.ClientName == "" })
	close(f.release)
	r = waitRecord(t, st, "c-late", func(r *calls.Record) bool { return r.ClientName != "" })
	if r.ClientName != "Анна Смирнова" || r.Result != b2bua.ResultNoAnswer || r.Ended.IsZero() || len(r.Rung) != 1 {
		t.Fatalf("named after the end: %+v", r)
	}

	// Known only by the number; and an outbound call.
	byNumber := inbound
	byNumber.CallID, byNumber.Outside = "c-number", "79160000001"
	out := b2bua.Event{CallID: "c-out", Direction: b2bua.Outbound, Account: "sales1", Outside: "89161234567", Caller: "101"}
	for _, c := range []b2bua.Event{byNumber, out} {
		m.CallEvent(at(c, 20, b2bua.EventRinging, nil))
		<-f.asked
		m.CallEvent(at(c, 25, b2bua.EventEnded, ended))
	}
	r = waitRecord(t, st, "c-out", func(r *calls.Record) bool { return r.ClientName != "" })
	if r.ClientName != "Анна Смирнова" {
		t.Fatalf("outbound call named %q", r.ClientName)
	}
	time.Sleep(100 * time.Millisecond) // the number-only answer has had its chance
	if r, _ := st.Get("c-number"); r == nil || r.ClientName != "" || r.ClientCompany != "" {
		t.Fatalf("a customer known only by the number named the call: %+v", r)
	}

	// Internal calls are never looked up.
	m.CallEvent(at(internal, 30, b2bua.EventRinging, nil))
	m.CallEvent(at(internal, 31, b2bua.EventEnded, ended))
	select {
	case p := <-f.asked:
		t.Fatalf("an internal call was looked up: %q", p)
	case <-time.After(100 * time.Millisecond):
	}
}

// A lookup that answers after the model has closed writes nothing (and
// does not panic on the closed writer).
func TestLateNameAfterClose(t *testing.T) {
	f := &finder{clients: map[string]*crm.Client{"+79161234567": {Name: "Анна"}}, release: make(chan struct{}), asked: make(chan string, 1)}
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	m := New(Config{Store: calls.NewStore(db), Region: "RU", Clients: f.find})
	m.CallEvent(at(inbound, 0, b2bua.EventRinging, nil))
	<-f.asked
	m.CallEvent(at(inbound, 1, b2bua.EventEnded, nil))
	m.Close()
	close(f.release)
	time.Sleep(50 * time.Millisecond)
}
