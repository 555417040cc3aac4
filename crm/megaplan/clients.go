package megaplan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"callgate/crm"
	"callgate/crm/outbox"
)

// contractor is the part of a ContractorHuman callgate reads or writes.
type contractor struct {
	ContentType  string `json:"contentType"`
	ID           string `json:"id,omitempty"`
	FirstName    string `json:"firstName,omitempty"`
	LastName     string `json:"lastName,omitempty"`
	Description  string `json:"description,omitempty"`
	Responsibles []ref  `json:"responsibles,omitempty"`
	ContactInfo  []struct {
		ContentType string `json:"contentType"`
		Type        string `json:"type"`
		Value       string `json:"value"`
	} `json:"contactInfo,omitempty"`
	TimeCreated *dateTime `json:"timeCreated,omitempty"`
	// Company is the ContractorCompany the client works for (read only).
	Company *struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"company,omitempty"`
}

// contractorByPhone finds the client with the phone; nil when there is
// none.
func (c *Connector) contractorByPhone(ctx context.Context, phone string) (*contractor, error) {
	var list []contractor
	q := map[string]any{"q": phone, "limit": 1, "fields": []string{"firstName", "lastName", "company", "description", "contactInfo"}}
	if err := c.do(ctx, http.MethodGet, "contractor", q, &list); err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, nil
	}
	return &list[0], nil
}

// Client implements crm.ClientFinder.
func (c *Connector) Client(ctx context.Context, phone string) (*crm.Client, error) {
	k, err := c.contractorByPhone(ctx, phone)
	if k == nil {
		return nil, err
	}
	name := strings.TrimSpace(k.FirstName + " " + k.LastName)
	cl := &crm.Client{CRM: "megaplan", Name: name, URL: c.base + "/crm/human/" + k.ID + "/card/"}
	if k.Company != nil {
		cl.Company = k.Company.Name
	}
	// Open deals are extra: the card shows the client without them.
	if deals, err := c.openDeals(ctx, k.ID); err == nil {
		for _, d := range deals {
			title := d.Name
			if title == "" {
				title = "№ " + d.Number
			}
			cl.Deals = append(cl.Deals, crm.Link{Title: title, URL: c.base + "/deals/" + d.ID + "/card/"})
		}
	}
	return cl, nil
}

// deal is the part of a Deal the client's card shows.
type deal struct {
	ID     string `json:"id"`
	Number string `json:"number"`
	Name   string `json:"name"`
	State  *struct {
		Type string `json:"type"`
	} `json:"state"`
}

// openDeals lists a client's deals that are still open (their state's
// type is "active"), with the filter shape of the official SDK's examples.
func (c *Connector) openDeals(ctx context.Context, contractorID string) ([]deal, error) {
	term := map[string]any{"contentType": "FilterTermRef", "field": "contractor", "comparison": "equals",
		"value": []ref{{ContentType: "ContractorHuman", ID: contractorID}}}
	filter := map[string]any{"contentType": "DealFilter", "config": map[string]any{"contentType": "FilterConfig",
		"termGroup": map[string]any{"contentType": "FilterTermGroup", "join": "and", "terms": []any{term}}}}
	var list []deal
	if err := c.do(ctx, http.MethodGet, "deal", map[string]any{"filter": filter, "fields": []string{"name", "number", "state"}, "limit": 20}, &list); err != nil {
		return nil, err
	}
	open := list[:0]
	for _, d := range list {
		if d.State == nil || d.State.Type == "" || d.State.Type == "active" {
			open = append(open, d)
		}
	}
	return open, nil
}

// deliverClient links the call to its client, creating the client (and a
// deal) first when the trunk says so and Megaplan does not know the number:
// a known client's calls create nothing. The new client's description
// names the call that created it, so a retry after a lost answer
// recognises its own client and goes on to the deal, while a later call
// from the same number finds a client made by another call and only links.
func (c *Connector) deliverClient(ctx context.Context, o op) error {
	k, err := c.contractorByPhone(ctx, o.Phone)
	if err != nil {
		return err
	}
	mark := createdBy(o.CallID)
	var id string
	fresh := false
	switch {
	case k != nil:
		id, fresh = k.ID, strings.Contains(k.Description, mark)
	case o.Create == "none":
		return nil
	default:
		// The employee who handled the call is responsible for the client.
		desc := mark
		if o.Note != "" {
			desc = o.Note + "\n" + mark
		}
		nc := contractor{ContentType: "ContractorHuman", FirstName: o.Phone, Description: desc, Responsibles: []ref{{ContentType: "Employee", ID: o.Employee}}}
		nc.ContactInfo = append(nc.ContactInfo, struct {
			ContentType string `json:"contentType"`
			Type        string `json:"type"`
			Value       string `json:"value"`
		}{"ContactInfo", "phone", o.Phone})
		var made contractor
		if err := c.do(ctx, http.MethodPost, "contractorHuman", nc, &made); err != nil {
			return fmt.Errorf("create client %s: %w", o.Phone, err)
		}
		id, fresh = made.ID, true
	}
	if fresh && o.Create == "contact+deal" && o.Program > 0 {
		// Megaplan checks the rights of the API user, not of the employee
		// named manager: a scheme that user may not create deals in leaves
		// the deal out (document 000: "the deal will not be created"), and
		// the client stays linked to the call.
		err := c.deal(ctx, o, id)
		switch {
		case errors.Is(err, errForbidden):
			c.cfg.Log.Warn("Megaplan refused the deal: the API user may not create deals in this scheme; the client is linked without one",
				"crm", "megaplan", "call_id", o.CallID, "program", o.Program, "employee", o.Employee, "error", err)
		case err != nil:
			return err
		}
	}
	return c.link(ctx, o.Providers, id)
}

// createdBy is the line in a client's description that names the call
// that created it.
func createdBy(callID string) string { return "Создан callgate по звонку " + callID }

// deal creates the call's deal unless it exists; its name carries the call
// id, which is how a retry finds it.
func (c *Connector) deal(ctx context.Context, o op, contractorID string) error {
	name := "Звонок " + o.Phone + " (" + o.CallID + ")"
	var found []struct {
		ID string `json:"id"`
	}
	if err := c.do(ctx, http.MethodGet, "deal", map[string]any{"q": o.CallID}, &found); err != nil {
		return err
	}
	if len(found) > 0 {
		return nil
	}
	d := map[string]any{"contentType": "Deal", "name": name, "description": o.Note,
		"program":    ref{ContentType: "Program", ID: strconv.Itoa(o.Program)},
		"manager":    ref{ContentType: "Employee", ID: o.Employee},
		"contractor": ref{ContentType: "ContractorHuman", ID: contractorID}}
	if err := c.do(ctx, http.MethodPost, "deal", d, nil); err != nil {
		return fmt.Errorf("create deal for %s: %w", o.Phone, err)
	}
	return nil
}

// link sets the client on each of the calls (by providerId) that Megaplan
// has; calls it never received are skipped.
func (c *Connector) link(ctx context.Context, providers []string, contractorID string) error {
	for _, pid := range providers {
		var ci callInfo
		err := c.do(ctx, http.MethodGet, "callInfo/provider", map[string]string{"providerId": pid}, &ci)
		if errors.Is(err, errNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if u := ci.FromUser; ci.Type != "out" && u != nil && u.ID == contractorID {
			continue
		}
		if u := ci.ToUser; ci.Type == "out" && u != nil && u.ID == contractorID {
			continue
		}
		if err := c.do(ctx, http.MethodPost, "callInfo/"+ci.ID+"/setContractor", ref{ContentType: "ContractorHuman", ID: contractorID}, nil); err != nil {
			return err
		}
	}
	return nil
}

// Lookback is how far back calls are attached to a client who appears in
// Megaplan later.
const Lookback = 30 * 24 * time.Hour

// Watch is what the contractor watcher needs from callgate.
type Watch struct {
	// Every is the polling period.
	Every time.Duration
	// Seen loads and Save stores the creation time of the newest client
	// looked at, so a restart does not look again.
	Seen func() time.Time
	Save func(time.Time) error
	// Calls lists the providerIds of calls with phone since a time.
	Calls func(phone string, since time.Time) []string
	// Put queues operations in the outbox.
	Put func(...outbox.Item) error
	Log *slog.Logger
}

// WatchClients polls Megaplan (outbound only) for clients created since the
// last look and queues the attachment of their calls of the last 30 days.
// The first look only sets the mark: clients from before are not touched.
func (c *Connector) WatchClients(ctx context.Context, w Watch) {
	t := time.NewTicker(w.Every)
	defer t.Stop()
	for {
		if err := c.pollClients(ctx, w); err != nil && ctx.Err() == nil {
			w.Log.Warn("Megaplan client poll failed", "crm", "megaplan", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pollClients pages through clients newest first down to the mark.
func (c *Connector) pollClients(ctx context.Context, w Watch) error {
	mark := w.Seen()
	newest := mark
	var after *ref
	for page := 0; page < 100; page++ {
		q := map[string]any{"limit": 50, "fields": []string{"contactInfo", "timeCreated"},
			"sortBy": []map[string]any{{"contentType": "SortField", "fieldName": "timeCreated", "desc": true}}}
		if after != nil {
			q["pageAfter"] = after
		}
		var list []contractor
		if err := c.do(ctx, http.MethodGet, "contractor", q, &list); err != nil {
			return err
		}
		done := len(list) == 0
		for _, k := range list {
			created := time.Time{}
			if k.TimeCreated != nil {
				created, _ = time.Parse(time.RFC3339Nano, k.TimeCreated.Value)
			}
			if !created.After(mark) {
				done = true
				break
			}
			if created.After(newest) {
				newest = created
			}
			if mark.IsZero() {
				continue // first look: only the mark is set
			}
			for _, ci := range k.ContactInfo {
				if ci.Type != "phone" {
					continue
				}
				pids := w.Calls(ci.Value, time.Now().Add(-Lookback))
				if len(pids) == 0 {
					continue
				}
				it := item("attach-"+k.ID, "attach-"+k.ID+"-"+ci.Value, "attach", op{Op: "attach", Providers: pids, Contractor: k.ID})
				if err := w.Put(it); err != nil {
					return err
				}
			}
		}
		if mark.IsZero() || done {
			break
		}
		after = &ref{ContentType: "ContractorHuman", ID: list[len(list)-1].ID}
	}
	if mark.IsZero() && newest.IsZero() {
		newest = time.Now().UTC()
	}
	if newest.After(mark) {
		return w.Save(newest)
	}
	return nil
}
