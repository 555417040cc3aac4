// Package apitest is a client for callgate's live event stream
// (GET /api/v1/events), shared by the tests and the load tools.
package apitest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Event is one Server-Sent Event as a client reads it.
type Event struct {
	ID, Kind string
	// Data is the event's JSON; Fields the same decoded generically.
	Data   json.RawMessage
	Fields map[string]any
}

// Subscribe opens base+"/api/v1/events" with token (and Last-Event-ID if
// lastID is set) and returns once the server has registered the
// subscription. Events arrive on the channel until ctx ends or the stream
// closes; then it is closed.
func Subscribe(ctx context.Context, client *http.Client, base, token, lastID string) (<-chan Event, error) {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimRight(base, "/")+"/api/v1/events", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		res.Body.Close()
		return nil, fmt.Errorf("events: %s (%s)", res.Status, res.Header.Get("Content-Type"))
	}
	out := make(chan Event, 256)
	connected := make(chan struct{})
	go func() {
		defer res.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(res.Body)
		var ev Event
		for sc.Scan() {
			switch l := sc.Text(); {
			case l == ": connected":
				close(connected)
			case strings.HasPrefix(l, "id: "):
				ev.ID = l[4:]
			case strings.HasPrefix(l, "event: "):
				ev.Kind = l[7:]
			case strings.HasPrefix(l, "data: "):
				ev.Data = json.RawMessage(l[6:])
				_ = json.Unmarshal(ev.Data, &ev.Fields)
			case l == "" && ev.Kind != "":
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
				ev = Event{}
			}
		}
	}()
	select {
	case <-connected:
		return out, nil
	case <-time.After(10 * time.Second):
		return nil, errors.New("events: no \": connected\" within 10 s")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
