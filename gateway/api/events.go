package api

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"callgate/crm"
	"callgate/gateway/calls"
	"callgate/sip/b2bua"
)

// FeedEvent is one event as sent to live clients.
type FeedEvent struct {
	ID   uint64
	Kind string
	Data []byte // JSON, built once for every subscriber

	employees []string // who may see it
	internal  bool
}

// feedData is the JSON of an event.
type feedData struct {
	Event      string   `json:"event"`
	CallID     string   `json:"call_id"`
	Direction  string   `json:"direction"`
	Internal   bool     `json:"internal,omitempty"`
	Caller     string   `json:"caller"`
	Outside    string   `json:"outside_number,omitempty"`
	Trunk      string   `json:"trunk_number,omitempty"`
	Account    string   `json:"account,omitempty"`
	Employees  []string `json:"employees"`
	AnsweredBy string   `json:"answered_by,omitempty"`
	// TransferredTo is whom a transferred event's call went to (an
	// employee, or a number through the VPBX).
	TransferredTo string    `json:"transferred_to,omitempty"`
	Result        string    `json:"result,omitempty"`
	Time          time.Time `json:"time"`
	// Tracking is where an inbound caller came from (call tracking).
	Tracking *crm.Tracking `json:"tracking,omitempty"`
}

// Feed keeps a bounded backlog of call events with increasing ids and fans
// them out to Server-Sent Events clients. A client that reconnects with
// Last-Event-ID gets what it missed from the backlog; a client that does not
// keep up is disconnected (and resumes the same way) rather than slowing
// anyone down.
type Feed struct {
	// Heartbeat is how often an idle stream gets a comment line, so proxies
	// and tunnels keep it open (0: 15 s).
	Heartbeat time.Duration

	mu      sync.Mutex
	backlog []*FeedEvent // oldest first, at most size
	size    int
	next    uint64
	subs    map[chan *FeedEvent]Principal
}

// NewFeed returns a feed remembering the last size events.
func NewFeed(size int) *Feed {
	return &Feed{size: size, next: 1, subs: map[chan *FeedEvent]Principal{}}
}

// Run publishes the events from ch until it is closed or ctx ends.
func (f *Feed) Run(ctx context.Context, ch <-chan calls.Event) {
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-ch:
			if !ok {
				return
			}
			f.Publish(e)
		}
	}
}

// Publish adds a call event to the backlog and sends it to subscribers
// allowed to see it.
func (f *Feed) Publish(e calls.Event) {
	r := e.Record
	emps := append([]string(nil), r.Rung...)
	if r.AnsweredBy != "" && !slices.Contains(emps, r.AnsweredBy) {
		emps = append(emps, r.AnsweredBy)
	}
	for _, l := range r.Legs {
		if !slices.Contains(emps, l.Employee) {
			emps = append(emps, l.Employee)
		}
	}
	at := r.Started
	switch e.Kind {
	case b2bua.EventRinging:
		if !r.Ringing.IsZero() {
			at = r.Ringing
		}
	case b2bua.EventAnswered:
		at = r.Answered
	case b2bua.EventEnded:
		at = r.Ended
	case b2bua.EventTransferred:
		if n := len(r.Transfers); n > 0 {
			at = r.Transfers[n-1].At
		}
	}
	if emps == nil {
		emps = []string{}
	}
	d := feedData{Event: string(e.Kind), CallID: r.ID, Direction: r.Direction, Internal: r.Internal, Caller: r.Caller,
		Outside: r.Outside, Trunk: r.TrunkNumber, Account: r.Account, Employees: emps, AnsweredBy: r.AnsweredBy, Time: at.UTC(), Tracking: r.Tracking}
	if e.Kind == b2bua.EventEnded {
		d.Result = r.Result
	}
	if n := len(r.Transfers); e.Kind == b2bua.EventTransferred && n > 0 {
		d.TransferredTo = r.Transfers[n-1].To
	}
	data, _ := json.Marshal(d)
	f.mu.Lock()
	defer f.mu.Unlock()
	ev := &FeedEvent{ID: f.next, Kind: string(e.Kind), Data: data, employees: emps, internal: r.Internal}
	f.next++
	if len(f.backlog) == f.size {
		copy(f.backlog, f.backlog[1:])
		f.backlog = f.backlog[:f.size-1]
	}
	f.backlog = append(f.backlog, ev)
	for ch, p := range f.subs {
		if !visible(p, ev) {
			continue
		}
		select {
		case ch <- ev:
		default:
			// Too slow: drop the client; it resumes from the backlog.
			delete(f.subs, ch)
			close(ch)
		}
	}
}

// visible: admins see everything, CRMs every external call, employees the
// calls that ring or involve them.
func visible(p Principal, ev *FeedEvent) bool {
	switch p.Kind {
	case "admin", "manager":
		return true
	case "crm":
		return !ev.internal
	case "employee":
		return p.All || slices.Contains(ev.employees, p.Name)
	}
	return false
}

// subscribe returns the backlog after lastID that p may see, whether events
// were lost between lastID and the backlog, and a channel for what follows.
func (f *Feed) subscribe(p Principal, lastID uint64, resume bool) ([]*FeedEvent, bool, chan *FeedEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var missed []*FeedEvent
	gap := false
	if resume {
		if len(f.backlog) > 0 && f.backlog[0].ID > lastID+1 {
			gap = true
		}
		for _, ev := range f.backlog {
			if ev.ID > lastID && visible(p, ev) {
				missed = append(missed, ev)
			}
		}
	}
	ch := make(chan *FeedEvent, 256)
	f.subs[ch] = p
	return missed, gap, ch
}

func (f *Feed) unsubscribe(ch chan *FeedEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.subs[ch]; ok {
		delete(f.subs, ch)
		close(ch)
	}
}

// Subscribers is the number of connected live clients.
func (f *Feed) Subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

// events: GET /api/v1/events, Server-Sent Events. Last-Event-ID (header,
// or last_event_id in the query for clients that cannot set headers)
// resumes after that event.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = r.URL.Query().Get("last_event_id")
	}
	var lastID uint64
	resume := last != ""
	if resume {
		n, err := strconv.ParseUint(last, 10, 64)
		if err != nil {
			Error(w, http.StatusBadRequest, "bad_last_event_id", "Last-Event-ID is the decimal id of an event")
			return
		}
		lastID = n
	}
	rc := http.NewResponseController(w)
	// A stream lives as long as the client, past the server's write
	// timeout: each write gets its own deadline instead, so a client that
	// stopped reading is still dropped.
	_ = rc.SetWriteDeadline(time.Now().Add(streamWriteGrace))
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	f := s.Events
	missed, gap, ch := f.subscribe(principal(r), lastID, resume)
	defer f.unsubscribe(ch)
	if gap {
		// The backlog no longer reaches back to the client's last event.
		_, _ = w.Write([]byte("event: gap\ndata: {}\n\n"))
	}
	for _, ev := range missed {
		writeEvent(w, ev)
	}
	_, _ = w.Write([]byte(": connected\n\n"))
	if rc.Flush() != nil {
		return
	}
	hb := f.Heartbeat
	if hb <= 0 {
		hb = 15 * time.Second
	}
	t := time.NewTicker(hb)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
			_ = rc.SetWriteDeadline(time.Now().Add(streamWriteGrace))
			_, _ = w.Write([]byte(": heartbeat\n\n"))
		case ev, ok := <-ch:
			if !ok {
				return // dropped for being slow; the client resumes with Last-Event-ID
			}
			_ = rc.SetWriteDeadline(time.Now().Add(streamWriteGrace))
			writeEvent(w, ev)
		drain:
			for {
				select {
				case ev, ok := <-ch:
					if !ok {
						_ = rc.Flush()
						return
					}
					writeEvent(w, ev)
				default:
					break drain
				}
			}
		}
		if rc.Flush() != nil {
			return
		}
	}
}

// streamWriteGrace is how long one write to an event stream may block: a
// client whose connection stopped taking data is dropped after it, and
// resumes with Last-Event-ID when it comes back.
const streamWriteGrace = time.Minute

func writeEvent(w http.ResponseWriter, ev *FeedEvent) {
	b := make([]byte, 0, len(ev.Data)+48)
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, ev.ID, 10)
	b = append(b, "\nevent: "...)
	b = append(b, ev.Kind...)
	b = append(b, "\ndata: "...)
	b = append(b, ev.Data...)
	b = append(b, "\n\n"...)
	_, _ = w.Write(b)
}
