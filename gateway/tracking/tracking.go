// Package tracking says where a caller came from. Static call tracking is
// the office number they dialled (one number per advertising channel);
// dynamic call tracking asks Mango Office's API (outbound, signed) which
// website visitor the dynamic number was shown to, and gets their UTM
// marks. A lookup runs beside the call and never holds it up.
package tracking

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"callgate/crm"
)

// Mango is a client of Mango Office's VPBX API for call-tracking queries.
type Mango struct {
	URL       string // https://app.mango-office.ru/vpbx/
	Key, Salt string
	HTTP      *http.Client
}

// Sign is Mango's request signature: SHA-256 (not HMAC) of key, the JSON
// exactly as sent, and salt.
func Sign(key, body, salt string) string {
	sum := sha256.Sum256([]byte(key + body + salt))
	return hex.EncodeToString(sum[:])
}

// Visitor asks queries/user_info_by_dct_number who was shown number (E.164
// with or without "+"). It returns nil when the number is bound to nobody.
func (m *Mango) Visitor(ctx context.Context, number string) (*crm.Marks, error) {
	body, _ := json.Marshal(map[string]string{"number": strings.TrimPrefix(number, "+")})
	form := url.Values{"vpbx_api_key": {m.Key}, "sign": {Sign(m.Key, string(body), m.Salt)}, "json": {string(body)}}
	u := strings.TrimRight(m.URL, "/") + "/queries/user_info_by_dct_number"
	req, err := http.NewRequestWithContext(ctx, "POST", u, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	client := m.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	res, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("mango user_info_by_dct_number: %w", errors.Unwrap(err))
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	type info struct {
		Channel struct {
			Source   string `json:"source"`
			Medium   string `json:"medium"`
			Campaign string `json:"campaign"`
			Content  string `json:"content"`
			Term     string `json:"term"`
		} `json:"channel"`
		CurrentPage struct {
			URL string `json:"url"`
		} `json:"current_page"`
		UID any `json:"uid"`
	}
	var ans struct {
		info
		Data    *info `json:"data"`
		Code    int   `json:"code"`
		Result  int   `json:"result"`
		Message any   `json:"message"`
	}
	if err := json.Unmarshal(raw, &ans); err != nil && res.StatusCode == http.StatusOK {
		return nil, fmt.Errorf("mango user_info_by_dct_number: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("mango user_info_by_dct_number: %d (code %d)", res.StatusCode, max(ans.Code, ans.Result))
	}
	in := ans.info
	if ans.Data != nil {
		in = *ans.Data
	}
	if in.UID == nil && in.Channel.Source == "" && in.CurrentPage.URL == "" {
		return nil, nil
	}
	c := in.Channel
	return &crm.Marks{Source: c.Source, Medium: c.Medium, Campaign: c.Campaign, Content: c.Content, Term: c.Term, Page: in.CurrentPage.URL}, nil
}

// Tracker runs visitor lookups for calls to dynamic numbers and hands the
// answers to whoever waits for them (the CRM popup), for at most a budget.
type Tracker struct {
	lookup func(ctx context.Context, number string) (*crm.Marks, error)
	budget time.Duration

	mu       sync.Mutex
	calls    map[string]*pending
	troubled time.Time // when Mango last failed or was late
	swept    time.Time
}

type pending struct {
	done    chan struct{}
	visitor *crm.Marks
	started time.Time
}

// troubleWindow is how long a slow or failing API is not waited for.
const troubleWindow = 30 * time.Second

// NewTracker returns a tracker asking lookup, waited for at most budget.
func NewTracker(lookup func(context.Context, string) (*crm.Marks, error), budget time.Duration) *Tracker {
	return &Tracker{lookup: lookup, budget: budget, calls: map[string]*pending{}}
}

// Start looks up the visitor behind the dynamic number a call came in on.
func (t *Tracker) Start(callID, number string) {
	l := &pending{done: make(chan struct{}), started: time.Now()}
	t.mu.Lock()
	if time.Since(t.swept) > time.Minute {
		t.swept = time.Now()
		for id, old := range t.calls {
			if time.Since(old.started) > time.Hour {
				delete(t.calls, id)
			}
		}
	}
	t.calls[callID] = l
	t.mu.Unlock()
	go func() {
		// The binding of a dynamic number to a visit is short-lived: ask
		// now, but do not let a hanging API pile up goroutines.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		v, err := t.lookup(ctx, number)
		cancel()
		t.mu.Lock()
		if err != nil {
			t.troubled = time.Now()
		}
		l.visitor = v
		t.mu.Unlock()
		close(l.done)
	}()
}

// Get returns the visitor if the lookup has finished (nil otherwise).
func (t *Tracker) Get(callID string) *crm.Marks {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.calls[callID]; l != nil {
		return l.visitor
	}
	return nil
}

// Wait returns the visitor, waiting for the lookup at most the budget, and
// not at all while the API has lately been failing or late.
func (t *Tracker) Wait(callID string) *crm.Marks {
	t.mu.Lock()
	l := t.calls[callID]
	troubled := time.Since(t.troubled) < troubleWindow
	t.mu.Unlock()
	if l == nil {
		return nil
	}
	if !troubled {
		timer := time.NewTimer(t.budget)
		defer timer.Stop()
		select {
		case <-l.done:
		case <-timer.C:
			t.mu.Lock()
			t.troubled = time.Now()
			t.mu.Unlock()
		}
	}
	return t.Get(callID)
}
