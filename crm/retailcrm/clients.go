package retailcrm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"callgate/crm"
	"callgate/crm/outbox"
)

// autocreatePath marks an outbox item that creates a customer (and an
// order) for an unknown caller; it is several API calls, each idempotent.
const autocreatePath = "autocreate"

// autocreateItem asks for the caller to become a customer whose manager is
// the employee who handled the call (and, with contact+deal, an order).
func (c *Connector) autocreateItem(call crm.Call, manager int) outbox.Item {
	for _, l := range call.Legs {
		if l.Person.CRMUser > 0 {
			manager = l.Person.CRMUser
			break
		}
	}
	phone := strings.TrimPrefix(call.Outside, "+")
	f := map[string]string{"phone": phone, "manager": strconv.Itoa(manager), "deal": strconv.FormatBool(call.Autocreate == "contact+deal"), "call": call.ID,
		"site": c.site(call.TrunkNumber)}
	if src := sourceOf(call.Tracking); src != nil {
		b, _ := json.Marshal(src)
		f["source"] = string(b)
	}
	return item(call.ID, call.ID+"-autocreate", "autocreate", autocreatePath, f)
}

// deliverAutocreate makes an unknown caller a customer (and, with
// contact+deal, gives them an order); a caller RetailCRM knows is left
// alone, so a known client's calls create nothing. The customer's
// externalId names the call that created it: a retry after a lost answer
// finds its own customer and goes on to the order, while a later call from
// the same number finds a customer made by another call and stops. The
// order refers to the customer by the id RetailCRM gave it.
func (c *Connector) deliverAutocreate(ctx context.Context, f map[string]string) error {
	list, err := c.customers(ctx, f["phone"])
	if err != nil {
		return err
	}
	mine := "callgate-" + f["call"]
	id := 0
	for _, k := range list {
		if k.ExternalID == mine {
			id = k.ID
		}
	}
	if len(list) > 0 && id == 0 {
		return nil // a known client
	}
	manager, _ := strconv.Atoi(f["manager"])
	if id == 0 {
		customer, _ := json.Marshal(map[string]any{"externalId": mine, "firstName": "+" + f["phone"],
			"phones": []map[string]string{{"number": f["phone"]}}, "managerId": manager})
		body, err := c.post(ctx, "/api/v5/customers/create", url.Values{"customer": {string(customer)}, "site": {siteOr(f["site"], c.cfg.Site)}})
		if err != nil {
			return err // "already exists" too: the next attempt finds it
		}
		var made struct {
			ID int `json:"id"`
		}
		if json.Unmarshal(body, &made) != nil || made.ID == 0 {
			return &outbox.Temporary{Err: fmt.Errorf("retailcrm customers/create: no id in the answer %.200q", body)}
		}
		id = made.ID
	}
	if f["deal"] == "true" {
		o := map[string]any{"externalId": mine, "customer": map[string]int{"id": id}, "managerId": manager, "phone": f["phone"]}
		if f["source"] != "" {
			o["source"] = json.RawMessage(f["source"])
		}
		order, _ := json.Marshal(o)
		if _, err := c.post(ctx, "/api/v5/orders/create", url.Values{"order": {string(order)}, "site": {siteOr(f["site"], c.cfg.Site)}}); err != nil && !alreadyExists(err) {
			return err
		}
	}
	return nil
}

// siteOr is an item's site, or def for items queued before items named
// their site.
func siteOr(site, def string) string {
	if site == "" {
		return def
	}
	return site
}

func alreadyExists(err error) bool { return strings.Contains(err.Error(), "already exists") }

type customer struct {
	ID         int    `json:"id"`
	ExternalID string `json:"externalId"`
	FirstName  string `json:"firstName"`
	LastName   string `json:"lastName"`
}

// Client implements crm.ClientFinder: the first customer with the phone,
// with their orders and the company of a corporate customer they are a
// contact of. Orders and company are extra: the card shows the client
// without them when RetailCRM does not give them.
func (c *Connector) Client(ctx context.Context, phone string) (*crm.Client, error) {
	list, err := c.customers(ctx, strings.TrimPrefix(phone, "+"))
	if err != nil || len(list) == 0 {
		return nil, err
	}
	k := list[0]
	base := strings.TrimRight(c.cfg.URL, "/")
	cl := &crm.Client{CRM: "retailcrm", Name: strings.TrimSpace(k.FirstName + " " + k.LastName), Site: c.cfg.Site}
	if k.ID <= 0 {
		return cl, nil
	}
	cl.URL = base + "/customers/" + strconv.Itoa(k.ID)
	var orders []order
	var corporates []corporate
	var wg sync.WaitGroup
	wg.Go(func() {
		var body struct {
			Orders []order `json:"orders"`
		}
		if c.get(ctx, "orders", url.Values{"filter[customerId]": {strconv.Itoa(k.ID)}, "limit": {"20"}}, &body) == nil {
			orders = body.Orders
		}
	})
	wg.Go(func() {
		var body struct {
			Corporates []corporate `json:"customersCorporate"`
		}
		if c.get(ctx, "customers-corporate", url.Values{"filter[contactIds][]": {strconv.Itoa(k.ID)}, "limit": {"20"}}, &body) == nil {
			corporates = body.Corporates
		}
	})
	wg.Wait()
	for _, o := range orders {
		cl.Deals = append(cl.Deals, crm.Link{Title: "№ " + o.Number, URL: base + "/orders/" + strconv.Itoa(o.ID) + "/edit"})
		if o.Site != "" {
			cl.Site = o.Site
		}
	}
	for _, k := range corporates {
		if cl.Company = k.NickName; k.MainCompany != nil && k.MainCompany.Name != "" {
			cl.Company = k.MainCompany.Name
		}
		if cl.Company != "" {
			break
		}
	}
	return cl, nil
}

type order struct {
	ID     int    `json:"id"`
	Number string `json:"number"`
	Site   string `json:"site"`
}

// corporate is the part of a corporate customer the card shows.
type corporate struct {
	ID          int    `json:"id"`
	NickName    string `json:"nickName"`
	MainCompany *struct {
		Name string `json:"name"`
	} `json:"mainCompany"`
}

func (c *Connector) customers(ctx context.Context, phone string) ([]customer, error) {
	var body struct {
		Customers []customer `json:"customers"`
	}
	err := c.get(ctx, "customers", url.Values{"filter[name]": {phone}, "limit": {"20"}}, &body)
	return body.Customers, err
}

// get asks a list method of API v5 (within the general rate limit) and
// classifies the answer for the outbox.
func (c *Connector) get(ctx context.Context, method string, q url.Values, out any) error {
	if err := c.general.Wait(ctx); err != nil {
		return &outbox.Temporary{Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimRight(c.cfg.URL, "/")+"/api/v5/"+method+"?"+q.Encode(), nil)
	if err != nil {
		return &outbox.Permanent{Err: err}
	}
	req.Header.Set("X-API-KEY", c.cfg.APIKey)
	res, err := c.http.Do(req)
	if err != nil {
		c.count("error")
		return &outbox.Temporary{Err: fmt.Errorf("retailcrm %s: %w", method, errors.Unwrap(err))}
	}
	defer res.Body.Close()
	c.count(strconv.Itoa(res.StatusCode))
	raw, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return &outbox.Temporary{Err: fmt.Errorf("retailcrm %s: %w", method, err)}
	}
	var fail struct {
		ErrorMsg string `json:"errorMsg"`
	}
	switch {
	case res.StatusCode == http.StatusOK:
		if err := json.Unmarshal(raw, out); err != nil {
			return &outbox.Temporary{Err: fmt.Errorf("retailcrm %s: answer: %w", method, err)}
		}
		return nil
	case res.StatusCode == http.StatusTooManyRequests || res.StatusCode >= 500:
		return &outbox.Temporary{Err: fmt.Errorf("retailcrm %s: %d", method, res.StatusCode), After: outbox.RetryAfter(res.Header.Get("Retry-After"))}
	}
	_ = json.Unmarshal(raw, &fail)
	return &outbox.Permanent{Err: fmt.Errorf("retailcrm %s: %d %s", method, res.StatusCode, fail.ErrorMsg)}
}
