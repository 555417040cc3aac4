package calls

import (
	"sync"
	"sync/atomic"

	"callgate/sip/b2bua"
)

// Event is a call changing state, with the record as it stands. Kind is the
// B2BUA's own: call events have one vocabulary from the SIP layer to the
// console. Record is a snapshot shared by every subscriber, so none may
// change it.
type Event struct {
	Kind   b2bua.EventKind
	Record *Record
}

// Bus fans call events out to subscribers (CRM outbox, console). Publishing
// never blocks the call: a subscriber that does not keep up loses events,
// and they are counted.
type Bus struct {
	mu      sync.Mutex
	subs    map[int]chan Event
	next    int
	Dropped atomic.Uint64
}

// NewBus returns an empty bus.
func NewBus() *Bus { return &Bus{subs: map[int]chan Event{}} }

// Subscribe returns a channel of events buffered for buf events, and a
// function that ends the subscription.
func (b *Bus) Subscribe(buf int) (<-chan Event, func()) {
	ch := make(chan Event, buf)
	b.mu.Lock()
	id := b.next
	b.next++
	b.subs[id] = ch
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		if _, ok := b.subs[id]; ok {
			delete(b.subs, id)
			close(ch)
		}
		b.mu.Unlock()
	}
}

// Publish hands e to every subscriber that has room.
func (b *Bus) Publish(e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ch := range b.subs {
		select {
		case ch <- e:
		default:
			b.Dropped.Add(1)
		}
	}
}
