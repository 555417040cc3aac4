package location

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"callgate/sip/sipnet"
)

func bind(aor, contact string, exp time.Time) Binding {
	return Binding{AOR: aor, Contact: contact, Source: "192.168.1.5:5060", Transport: "udp", Expires: exp, CallID: "c", CSeq: 1, Since: exp.Add(-time.Hour)}
}

func TestModifyLookupExpire(t *testing.T) {
	tb := New()
	now := time.Now()
	_, err := tb.Modify("101", now, func(cur []Binding) ([]Binding, error) {
		return append(cur, bind("101", "sip:101@a", now.Add(time.Minute)), bind("101", "sip:101@b", now.Add(time.Hour))), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := tb.Lookup("101", now); len(got) != 2 || tb.Len() != 2 {
		t.Fatalf("lookup = %v len %d", got, tb.Len())
	}
	if got := tb.Lookup("101", now.Add(2*time.Minute)); len(got) != 1 || got[0].Contact != "sip:101@b" {
		t.Fatalf("expired binding still returned: %v", got)
	}
	if n := tb.Expire(now.Add(2 * time.Minute)); n != 1 || tb.Len() != 1 {
		t.Fatalf("expired %d, len %d", n, tb.Len())
	}
	// An error from fn changes nothing.
	_, err = tb.Modify("101", now, func(cur []Binding) ([]Binding, error) { return nil, errors.New("no") })
	if err == nil || tb.Len() != 1 {
		t.Fatal("failed modify changed the table")
	}
}

func TestFlushAndRestore(t *testing.T) {
	tb := New()
	now := time.Now()
	for i := 0; i < 3; i++ {
		aor := fmt.Sprint(100 + i)
		tb.Modify(aor, now, func(cur []Binding) ([]Binding, error) {
			return []Binding{bind(aor, "sip:"+aor+"@x", now.Add(time.Duration(i)*time.Minute+time.Second))}, nil
		})
	}
	disk := map[string][]byte{}
	save := func(ch map[string][]byte) error {
		for k, v := range ch {
			if v == nil {
				delete(disk, k)
			} else {
				disk[k] = v
			}
		}
		return nil
	}
	if err := tb.Flush(save); err != nil || len(disk) != 3 {
		t.Fatalf("flush: %v, %d on disk", err, len(disk))
	}
	// A failed save keeps the change pending.
	tb.Modify("100", now, func([]Binding) ([]Binding, error) { return nil, nil })
	if err := tb.Flush(func(map[string][]byte) error { return errors.New("disk full") }); err == nil {
		t.Fatal("save error lost")
	}
	if err := tb.Flush(save); err != nil || len(disk) != 2 {
		t.Fatalf("pending delete not flushed: %d on disk", len(disk))
	}
	// Restart: restore what is on disk, one of them has expired meanwhile.
	var all []Binding
	for _, v := range disk {
		list, err := Decode(v)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, list...)
	}
	r := New()
	if n := r.Restore(all, now.Add(90*time.Second)); n != 1 || len(r.Lookup("102", now)) != 1 {
		t.Fatalf("restored %d", n)
	}
}

func TestConcurrentModify(t *testing.T) {
	tb := New()
	now := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				got, _ := tb.Modify("101", now, func(cur []Binding) ([]Binding, error) {
					return append(cur, bind("101", fmt.Sprintf("sip:%d-%d@x", w, i), now.Add(time.Hour))), nil
				})
				tb.Expire(now) // rewrites the table's lists while callers read what Modify returned
				for _, b := range got {
					_ = b.Contact
				}
				tb.Lookup("101", now)
				tb.Flush(func(map[string][]byte) error { return nil })
			}
		}(w)
	}
	wg.Wait()
	if tb.Len() != 400 || len(tb.Lookup("101", now)) != 400 {
		t.Fatalf("len = %d", tb.Len())
	}
}

// BenchmarkMemoryPerBinding reports the heap held per binding for 10,000
// registered phones, with realistic field sizes.
func BenchmarkMemoryPerBinding(b *testing.B) {
	const phones = 10000
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		tb := New()
		now := time.Now()
		for i := 0; i < phones; i++ {
			aor := fmt.Sprintf("%d", 10000+i)
			tb.Modify(aor, now, func(cur []Binding) ([]Binding, error) {
				return append(cur, Binding{AOR: aor, Contact: fmt.Sprintf("sip:%s@192.168.%d.%d:5060;transport=udp", aor, i/250, i%250),
					Source: fmt.Sprintf("192.168.%d.%d:5060", i/250, i%250), Transport: "udp", Local: "192.168.0.1:5060",
					Expires: now.Add(time.Hour), CallID: fmt.Sprintf("%032x", i), CSeq: 2, UserAgent: "Yealink SIP-T46S 66.86.0.15", Since: now}), nil
			})
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/phones, "bytes/binding")
		runtime.KeepAlive(tb)
	}
}

func TestRestoreDropsWebSocketBindings(t *testing.T) {
	now := time.Now()
	udp := bind("101", "sip:101@10.0.0.5", now.Add(time.Hour))
	ws := bind("101", "sip:x@y.invalid;transport=ws", now.Add(time.Hour))
	ws.Transport = sipnet.WS
	r := New()
	if n := r.Restore([]Binding{udp, ws}, now); n != 1 {
		t.Fatalf("restored %d bindings, want the UDP one only", n)
	}
	if got := r.Lookup("101", now); len(got) != 1 || got[0].Transport == sipnet.WS {
		t.Fatalf("after restore: %+v", got)
	}
}

func TestDropFlow(t *testing.T) {
	now := time.Now()
	tb := New()
	ws := func(src string) Binding {
		b := bind("101", "sip:x@"+src+".invalid;transport=ws", now.Add(time.Hour))
		b.Transport, b.Source = sipnet.WS, src
		return b
	}
	desk := bind("101", "sip:101@10.0.0.5", now.Add(time.Hour))
	tb.Modify("101", now, func([]Binding) ([]Binding, error) {
		return []Binding{desk, ws("127.0.0.1:40001"), ws("127.0.0.1:40002")}, nil
	})
	if n := tb.DropFlow(sipnet.WS, "127.0.0.1:40001", now); n != 1 {
		t.Fatalf("dropped %d", n)
	}
	got := tb.Lookup("101", now)
	if len(got) != 2 || got[0].Source != desk.Source || got[1].Source != "127.0.0.1:40002" {
		t.Fatalf("left %+v", got)
	}
	// A UDP phone at the same address is another flow.
	if n := tb.DropFlow(sipnet.WS, desk.Source, now); n != 0 || len(tb.Lookup("101", now)) != 2 {
		t.Fatal("a desk phone's binding was dropped with a WebSocket flow")
	}
}
