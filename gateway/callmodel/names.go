package callmodel

import (
	"context"
	"strings"
	"time"

	"callgate/crm"
	"callgate/gateway/calls"
)

// ClientFinder looks the outside party up in the CRMs (nil, nil: nobody
// knows the number).
type ClientFinder func(ctx context.Context, phone string) (*crm.Client, error)

// NameClients makes the model name each call's outside party through find
// from now on; the CRM link that finds them reads the model's records, so
// it comes after the model.
func (m *Model) NameClients(find ClientFinder) {
	m.mu.Lock()
	m.clients = find
	m.mu.Unlock()
}

// lookupTimeout bounds a call's client lookup; the card's own lookup gives
// the CRMs less, so a slow CRM still names the call in the history.
const lookupTimeout = 5 * time.Second

// startNaming asks the CRMs who the outside party is, off the call's
// goroutine: the answer lands on the record at the call's next event, or,
// when the call has ended by then, as one more write of its final record.
// Called with m.mu held, for a new call.
func (m *Model) startNaming(oc *openCall) {
	phone := oc.rec.Outside
	if m.clients == nil || oc.rec.Internal || phone == "" {
		return
	}
	oc.naming = true
	id, find := oc.rec.ID, m.clients
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
		defer cancel()
		c, err := find(ctx, phone)
		if err != nil {
			m.log.Debug("client lookup failed", "call_id", id, "error", err)
		}
		m.named(id, c)
	}()
}

// named takes a lookup's answer (nil: unknown or failed).
func (m *Model) named(id string, c *crm.Client) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if oc := m.open[id]; oc != nil {
		oc.naming, oc.client = false, c
		return
	}
	r, ok := m.late[id]
	delete(m.late, id)
	if ok && !m.closed && nameRecord(r, c) {
		m.writes <- *r
	}
}

// takeName moves an answer that arrived into the open call's record.
// Called with m.mu held.
func takeName(oc *openCall) {
	if oc.client != nil {
		nameRecord(&oc.rec, oc.client)
		oc.client = nil
	}
}

// closeNaming is the end of an open call: its final record has been
// written as snap. An answer that came in meanwhile is written with it; a
// lookup still going keeps the record for its answer. Called with m.mu
// held.
func (m *Model) closeNaming(oc *openCall, snap *calls.Record) {
	switch {
	case oc.client != nil:
		r := *snap
		if nameRecord(&r, oc.client) && !m.closed {
			m.writes <- r
		}
	case oc.naming:
		r := *snap
		m.late[r.ID] = &r
	}
}

// nameRecord puts what a CRM knows of the client on the record and reports
// whether it changed anything. A name that is only the number (a customer
// callgate created for an unknown caller) names nobody.
func nameRecord(r *calls.Record, c *crm.Client) bool {
	if c == nil || r.ClientName != "" {
		return false
	}
	name := strings.TrimSpace(c.Name)
	if digits(name) != "" && digits(name) == digits(r.Outside) {
		name = ""
	}
	if name == "" && c.Company == "" {
		return false
	}
	r.ClientName, r.ClientCompany = name, c.Company
	return true
}

func digits(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
}
