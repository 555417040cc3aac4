// Package location is the registrar's binding table: which devices are
// registered for each address of record (extension), where they can be
// reached, and until when. It lives in memory and is written behind to a
// store in batches (Persister), so registration throughput is not bounded
// by disk syncs; Keepalive pings the devices with OPTIONS so that those
// behind NAT stay reachable.
package location

import (
	"encoding/json"
	"hash/maphash"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"callgate/sip/sipnet"
)

// Binding is one registered device of an address of record.
type Binding struct {
	AOR       string           `json:"aor"`
	Contact   string           `json:"contact"`            // the Contact URI the device sent
	Instance  string           `json:"instance,omitempty"` // +sip.instance, identifies a device across Contact changes
	RegID     uint32           `json:"reg_id,omitempty"`   // RFC 5626 reg-id: one flow of the instance
	Source    string           `json:"source"`             // IP:port the REGISTER came from (where the device is reached)
	Transport sipnet.Transport `json:"transport"`
	Local     string           `json:"local"` // our listener it came in on, IP:port
	Expires   time.Time        `json:"expires"`
	CallID    string           `json:"call_id"`
	CSeq      uint32           `json:"cseq"`
	UserAgent string           `json:"user_agent,omitempty"`
	Since     time.Time        `json:"since"` // first registration of this device
	// Pass is the tag of the browser phone's pass the binding was
	// registered with ("" for the extension's own password): it goes when
	// the pass is revoked (DropPass). Never stored: such bindings are not.
	Pass string `json:"-"`
}

// Same reports whether b and o describe the same device.
func (b *Binding) Same(o *Binding) bool {
	if b.Instance != "" && o.Instance != "" {
		return b.Instance == o.Instance
	}
	return b.Contact == o.Contact
}

const shardCount = 64

type shard struct {
	mu    sync.RWMutex
	aors  map[string][]Binding
	dirty map[string]struct{}
}

// Table holds the bindings. It is safe for concurrent use.
type Table struct {
	seed    maphash.Seed
	shards  [shardCount]shard
	count   atomic.Int64
	changed chan struct{}
}

// New returns an empty table.
func New() *Table {
	t := &Table{seed: maphash.MakeSeed(), changed: make(chan struct{}, 1)}
	for i := range t.shards {
		t.shards[i].aors = map[string][]Binding{}
		t.shards[i].dirty = map[string]struct{}{}
	}
	return t
}

func (t *Table) shard(aor string) *shard {
	return &t.shards[maphash.String(t.seed, aor)%shardCount]
}

// Changed is signalled (without blocking) whenever something needs flushing.
func (t *Table) Changed() <-chan struct{} { return t.changed }

func (t *Table) markLocked(s *shard, aor string) {
	s.dirty[aor] = struct{}{}
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

// Modify replaces the bindings of aor with what fn returns, atomically with
// respect to other changes of the same aor. fn gets the current, unexpired
// bindings (a copy it may modify) and may return an error to change nothing.
func (t *Table) Modify(aor string, now time.Time, fn func(cur []Binding) ([]Binding, error)) ([]Binding, error) {
	s := t.shard(aor)
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.aors[aor]
	if len(old) > 0 && old[0].AOR == aor {
		// Storing under the caller's string would keep whatever it is a
		// view of (a whole datagram, for the registrar's fast path).
		aor = old[0].AOR
	} else {
		aor = strings.Clone(aor)
	}
	cur := make([]Binding, 0, len(old)+1)
	for _, b := range old {
		if b.Expires.After(now) {
			cur = append(cur, b)
		}
	}
	next, err := fn(cur)
	if err != nil {
		return nil, err
	}
	t.count.Add(int64(len(next) - len(old)))
	if len(next) == 0 {
		delete(s.aors, aor)
	} else {
		s.aors[aor] = next
	}
	t.markLocked(s, aor)
	return append([]Binding(nil), next...), nil // the stored slice stays private to the table
}

// Lookup returns copies of the unexpired bindings of aor, newest first.
func (t *Table) Lookup(aor string, now time.Time) []Binding {
	s := t.shard(aor)
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Binding
	for _, b := range s.aors[aor] {
		if b.Expires.After(now) {
			out = append(out, b)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since.After(out[j].Since) })
	return out
}

// All returns copies of every unexpired binding.
func (t *Table) All(now time.Time) []Binding {
	var out []Binding
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		for _, list := range s.aors {
			for _, b := range list {
				if b.Expires.After(now) {
					out = append(out, b)
				}
			}
		}
		s.mu.RUnlock()
	}
	return out
}

// Len is the number of bindings held (expired ones until the next Expire).
func (t *Table) Len() int { return int(t.count.Load()) }

// Expire removes bindings whose time has passed and returns how many.
func (t *Table) Expire(now time.Time) int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for aor, list := range s.aors {
			var keep []Binding // a new slice: copies handed out earlier may share the old one
			for _, b := range list {
				if b.Expires.After(now) {
					keep = append(keep, b)
				}
			}
			if removed := len(list) - len(keep); removed > 0 {
				n += removed
				if len(keep) == 0 {
					delete(s.aors, aor)
				} else {
					s.aors[aor] = keep
				}
				t.markLocked(s, aor)
			}
		}
		s.mu.Unlock()
	}
	t.count.Add(int64(-n))
	return n
}

// Restore loads persisted bindings, dropping those already expired and
// those over WebSocket, whose connection died with the process that held
// it. It returns how many were kept.
func (t *Table) Restore(list []Binding, now time.Time) int {
	n := 0
	for _, b := range list {
		if !b.Expires.After(now) || b.Transport.OverHTTP() {
			continue
		}
		s := t.shard(b.AOR)
		s.mu.Lock()
		s.aors[b.AOR] = append(s.aors[b.AOR], b)
		s.mu.Unlock()
		n++
	}
	t.count.Add(int64(n))
	return n
}

// Saver persists changes: for each changed aor either its bindings (encoded
// as a JSON list) or nil when the aor has none left.
type Saver func(changes map[string][]byte) error

// Flush hands every aor changed since the last flush to save. If save fails
// the changes stay pending for the next flush.
func (t *Table) Flush(save Saver) error {
	// Copy under the shard locks, encode outside them: REGISTERs must not
	// wait for JSON encoding of a large batch.
	pending := map[string][]Binding{}
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for aor := range s.dirty {
			pending[aor] = append([]Binding(nil), s.aors[aor]...)
		}
		clear(s.dirty)
		s.mu.Unlock()
	}
	if len(pending) == 0 {
		return nil
	}
	changes := make(map[string][]byte, len(pending))
	var err error
	for aor, list := range pending {
		if len(list) == 0 {
			changes[aor] = nil
			continue
		}
		if changes[aor], err = json.Marshal(list); err != nil {
			break
		}
	}
	if err == nil {
		err = save(changes)
	}
	if err != nil {
		for aor := range pending {
			s := t.shard(aor)
			s.mu.Lock()
			t.markLocked(s, aor)
			s.mu.Unlock()
		}
		return err
	}
	return nil
}

// Decode parses one persisted value written by Flush.
func Decode(v []byte) ([]Binding, error) {
	var list []Binding
	err := json.Unmarshal(v, &list)
	return list, err
}

// DropFlow removes the bindings that came over one connection of a
// transport whose bindings die with their connection (WebSocket): the
// device can only be reached through it, and a browser tab that reloads
// opens a new one. It returns how many were removed.
func (t *Table) DropFlow(transport sipnet.Transport, source string, now time.Time) int {
	return t.dropWhere(now, func(b *Binding) bool { return b.Transport == transport && b.Source == source })
}

// DropPass removes the bindings registered with the browser phone's passes
// tagged tag (their session logged out). It returns how many.
func (t *Table) DropPass(tag string, now time.Time) int {
	if tag == "" {
		return 0
	}
	return t.dropWhere(now, func(b *Binding) bool { return b.Pass == tag })
}

func (t *Table) dropWhere(now time.Time, drop func(*Binding) bool) int {
	n := 0
	for _, b := range t.All(now) {
		if !drop(&b) {
			continue
		}
		t.Modify(b.AOR, now, func(cur []Binding) ([]Binding, error) {
			kept := cur[:0]
			for _, c := range cur {
				if drop(&c) {
					n++
					continue
				}
				kept = append(kept, c)
			}
			return kept, nil
		})
	}
	return n
}
