package calls

import (
	"sync"
	"testing"

	"callgate/sip/b2bua"
)

func TestBusFansOutWithoutBlocking(t *testing.T) {
	b := NewBus()
	fast, stopFast := b.Subscribe(10)
	slow, stopSlow := b.Subscribe(1)
	for _, k := range []b2bua.EventKind{b2bua.EventRinging, b2bua.EventAnswered, b2bua.EventEnded} {
		b.Publish(Event{Kind: k, Record: &Record{ID: "c1"}})
	}
	var got []b2bua.EventKind
	for len(got) < 3 {
		got = append(got, (<-fast).Kind)
	}
	if got[0] != b2bua.EventRinging || got[2] != b2bua.EventEnded {
		t.Fatalf("order %v", got)
	}
	if e := <-slow; e.Kind != b2bua.EventRinging || b.Dropped.Load() != 2 {
		t.Fatalf("slow subscriber got %v, dropped %d", e.Kind, b.Dropped.Load())
	}
	stopFast()
	stopFast()
	if _, ok := <-fast; ok {
		t.Fatal("channel open after unsubscribe")
	}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				b.Publish(Event{Kind: b2bua.EventRinging})
			}
		}()
	}
	wg.Wait()
	stopSlow()
}
