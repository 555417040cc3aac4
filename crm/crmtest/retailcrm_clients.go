package crmtest

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
)

func (r *RetailCRM) findCustomers(w http.ResponseWriter, req *http.Request) {
	name := req.URL.Query().Get("filter[name]")
	r.mu.Lock()
	var found []RetailCustomer
	for _, c := range r.customers {
		for _, p := range c.Phones {
			if name != "" && p.Number == name {
				found = append(found, c)
			}
		}
	}
	r.mu.Unlock()
	if found == nil {
		found = []RetailCustomer{}
	}
	retailOK(w, map[string]any{"pagination": map[string]int{"limit": 20, "totalCount": len(found), "currentPage": 1, "totalPageCount": 1}, "customers": found})
}

// RetailCorporate is a corporate customer (a company buying), with the
// individual customers who are its contact persons.
type RetailCorporate struct {
	ID          int    `json:"id"`
	NickName    string `json:"nickName"`
	MainCompany *struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	} `json:"mainCompany,omitempty"`
	Contacts []int `json:"-"`
}

// AddCorporate creates a corporate customer whose main company is company
// (none when empty), with customers (by id) as its contact persons, the
// way a manager does in RetailCRM.
func (r *RetailCRM) AddCorporate(nickName, company string, contacts ...int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := RetailCorporate{ID: 500 + len(r.corporates), NickName: nickName, Contacts: contacts}
	if company != "" {
		k.MainCompany = &struct {
			ID   int    `json:"id"`
			Name string `json:"name"`
		}{ID: 900 + len(r.corporates), Name: company}
	}
	r.corporates = append(r.corporates, k)
	return k.ID
}

// findCorporates answers GET customers-corporate?filter[contactIds][]=N
// (one or more); the other filters of the method are not modelled and are
// refused as RetailCRM refuses a filter it does not know.
func (r *RetailCRM) findCorporates(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	var ids []int
	for key, vals := range q {
		switch key {
		case "limit", "page":
		case "filter[contactIds][]":
			for _, v := range vals {
				id, err := strconv.Atoi(v)
				if err != nil {
					retailError(w, 400, "Errors in the input parameters", map[string]string{"filter[contactIds]": "This value is not valid."})
					return
				}
				ids = append(ids, id)
			}
		default:
			retailError(w, 400, "Errors in the input parameters", map[string]string{key: "This form should not contain extra fields."})
			return
		}
	}
	r.mu.Lock()
	found := []RetailCorporate{}
	for _, k := range r.corporates {
		for _, id := range ids {
			if slices.Contains(k.Contacts, id) {
				found = append(found, k)
				break
			}
		}
	}
	r.mu.Unlock()
	retailOK(w, map[string]any{"pagination": map[string]int{"limit": 20, "totalCount": len(found), "currentPage": 1, "totalPageCount": 1}, "customersCorporate": found})
}

// findOrders answers GET orders?filter[customerId]=N.
func (r *RetailCRM) findOrders(w http.ResponseWriter, req *http.Request) {
	id, err := strconv.Atoi(req.URL.Query().Get("filter[customerId]"))
	if err != nil {
		retailError(w, 400, "Errors in the input parameters", map[string]string{"filter[customerId]": "an integer is expected"})
		return
	}
	r.mu.Lock()
	found := []RetailOrder{}
	for _, o := range r.orders {
		if o.Customer.ID == id {
			found = append(found, o)
		}
	}
	r.mu.Unlock()
	retailOK(w, map[string]any{"pagination": map[string]int{"limit": 20, "totalCount": len(found), "currentPage": 1, "totalPageCount": 1}, "orders": found})
}

// created handles customers/create and orders/create alike: no rights →
// "Access denied.", the entity decoded strictly from its form field,
// validated, refused when its externalId exists, then kept.
func created[T any](r *RetailCRM, w http.ResponseWriter, req *http.Request, field, kind string, list *[]T,
	externalID func(*T) string, setID func(*T, int), check func(*T) string) {
	r.mu.Lock()
	deny := r.denyCreate
	r.mu.Unlock()
	if deny {
		retailError(w, 403, "Access denied.", nil)
		return
	}
	var v T
	if err := decodeStrict(req.PostForm.Get(field), &v); err != nil {
		retailError(w, 400, "Errors in the entity format", map[string]string{field: err.Error()})
		return
	}
	if req.PostForm.Get("site") == "" {
		retailError(w, 400, "Parameter 'site' is missing", nil)
		return
	}
	if externalID(&v) == "" {
		retailError(w, 400, "Validation error", map[string]string{field: "externalId is required (callgate always sends one)"})
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if msg := check(&v); msg != "" {
		retailError(w, 400, "Validation error", map[string]string{field: msg})
		return
	}
	if slices.ContainsFunc(*list, func(k T) bool { return externalID(&k) == externalID(&v) }) {
		retailError(w, 400, kind+" already exists.", nil)
		return
	}
	id := len(*list) + 1 // as AddCustomer numbers them
	if kind == "Order" {
		id = 100 + len(*list) // as AddOrder does
	}
	setID(&v, id)
	*list = append(*list, v)
	retailStatus(w, http.StatusCreated, map[string]any{"success": true, "id": id})
}

func (r *RetailCRM) createCustomer(w http.ResponseWriter, req *http.Request) {
	created(r, w, req, "customer", "Customer", &r.customers, func(c *RetailCustomer) string { return c.ExternalID },
		func(c *RetailCustomer, id int) { c.ID = id },
		func(c *RetailCustomer) string {
			c.Site = req.PostForm.Get("site")
			if len(c.Phones) == 0 {
				return "phones are required"
			}
			return ""
		})
}

func (r *RetailCRM) createOrder(w http.ResponseWriter, req *http.Request) {
	created(r, w, req, "order", "Order", &r.orders, func(o *RetailOrder) string { return o.ExternalID },
		func(o *RetailOrder, id int) { o.ID, o.Number = id, strconv.Itoa(id)+"C" },
		func(o *RetailOrder) string {
			// RetailCRM finds the order's customer by id, or by externalId
			// within the site; one that does not exist is refused.
			site := req.PostForm.Get("site")
			for _, c := range r.customers {
				if (o.Customer.ID != 0 && c.ID == o.Customer.ID) || (o.Customer.ExternalID != "" && c.ExternalID == o.Customer.ExternalID && c.Site == site) {
					o.Site = site
					return ""
				}
			}
			return fmt.Sprintf("customer %+v not found", o.Customer)
		})
}

// userStatus answers POST /api/v5/users/{id}/status: status is free, busy,
// dinner or break; the id is a user's number.
func (r *RetailCRM) userStatus(w http.ResponseWriter, req *http.Request, id string) {
	n, err := strconv.Atoi(id)
	if err != nil || n <= 0 {
		retailError(w, 404, "Not found", nil)
		return
	}
	switch st := req.PostForm.Get("status"); st {
	case "free", "busy", "dinner", "break":
		r.mu.Lock()
		if r.statuses == nil {
			r.statuses = map[int]string{}
		}
		r.statuses[n] = st
		r.mu.Unlock()
		retailOK(w, map[string]any{})
	default:
		retailError(w, 400, "Errors in the input parameters", map[string]string{"status": "The value you selected is not a valid choice."})
	}
}

// UserStatuses are the users' statuses set through the API.
func (r *RetailCRM) UserStatuses() map[int]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[int]string{}
	for k, v := range r.statuses {
		out[k] = v
	}
	return out
}
