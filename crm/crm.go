// Package crm is what the CRM connectors share: the view of a call they are
// given, and the Connector interface the gateway drives. Connectors never
// accept connections: they turn call events into outbox items and deliver
// them to the CRM's API over outbound HTTPS.
package crm

import (
	"context"
	"net/url"
	"time"

	"callgate/crm/outbox"
)

// Person is an employee on a call, with their user id in the connector's CRM
// (0: not mapped there).
type Person struct {
	Employee  string
	Extension string
	CRMUser   int
}

// Leg is one employee's part of a call.
type Leg struct {
	N           int
	Person      Person
	Answered    time.Time
	Ended       time.Time
	TalkSeconds float64
	// RecordURL is a signed link to the leg's recording ("" if none).
	RecordURL string
	// TransferredFrom is the employee who transferred the call to this leg.
	TransferredFrom string
}

// Call is a call as a CRM sees it (never an internal call).
type Call struct {
	ID          string
	Direction   string // inbound or outbound
	Origin      string // "click-to-call" for calls placed through the API
	Outside     string // the client's number, E.164
	TrunkNumber string // the office number dialled or dialled from (E.164)
	Account     string
	Rung        []Person
	AnsweredBy  string
	Started     time.Time
	Answered    time.Time
	Ended       time.Time
	WaitSeconds float64
	TalkSeconds float64
	Result      string // answered, no-answer, busy, failed, abandoned, interrupted
	Legs        []Leg
	// Tracking is where an inbound caller came from (nil: unknown).
	Tracking *Tracking
	// Autocreate is the trunk's rule for callers the CRM does not know:
	// "none", "contact" or "contact+deal".
	Autocreate string
}

// Tracking is where an inbound caller came from: the office number they
// dialled (static call tracking: one number per advertising channel, named
// by Source) and, for a dynamic call-tracking number, the UTM marks of
// their website visit and the page they were on.
type Tracking struct {
	Number string `json:"number"`
	Marks
	Dynamic bool `json:"dynamic,omitempty"`
}

// Marks are the UTM marks of a website visit and the page the visitor was
// on; for static tracking only Source is set.
type Marks struct {
	Source   string `json:"source,omitempty"`
	Medium   string `json:"medium,omitempty"`
	Campaign string `json:"campaign,omitempty"`
	Content  string `json:"content,omitempty"`
	Term     string `json:"term,omitempty"`
	Page     string `json:"page,omitempty"`
}

// UTM is the tracking data as a query string (utm_source=...&...).
func (t *Tracking) UTM() string {
	if t == nil {
		return ""
	}
	v := url.Values{}
	for k, s := range map[string]string{"utm_source": t.Source, "utm_medium": t.Medium, "utm_campaign": t.Campaign, "utm_content": t.Content, "utm_term": t.Term} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v.Encode()
}

// Event kinds a connector receives.
const (
	Ringing     = "ringing"
	Answered    = "answered"
	Transferred = "transferred"
	Ended       = "ended"
)

// Event is a call changing state.
type Event struct {
	Kind string
	Call Call
}

// Connector turns call events into CRM operations and delivers them.
type Connector interface {
	// Name is the CRM's name in metrics, status and the outbox ("retailcrm").
	Name() string
	// Items are the operations to queue for an event (none is fine), each
	// with an idempotency key unique to call + leg + kind.
	Items(Event) []outbox.Item
	outbox.Deliverer
}

// Client is what a CRM knows of a caller, for the console's popup.
type Client struct {
	CRM     string `json:"crm"`
	Name    string `json:"name"`
	Company string `json:"company,omitempty"`
	// URL opens the client's card in the CRM.
	URL string `json:"url,omitempty"`
	// Site is the shop the client belongs to (RetailCRM).
	Site string `json:"site,omitempty"`
	// Deals are the client's orders or deals, with links into the CRM.
	Deals []Link `json:"deals,omitempty"`
}

// Link is a titled link into a CRM.
type Link struct {
	Title string `json:"title"`
	URL   string `json:"url"`
}

// ClientFinder is a connector that can look a caller up by phone (E.164);
// nil, nil when the CRM does not know them.
type ClientFinder interface {
	Client(ctx context.Context, phone string) (*Client, error)
}
