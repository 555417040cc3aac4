// Package calls keeps the call history: one record per call with its legs,
// written to the database as the call progresses (so a crash leaves a
// record that says it was interrupted), and a bus that publishes call
// events to later consumers (CRM outbox, web console).
package calls

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"callgate/crm"
	"callgate/gateway/store"

	bolt "go.etcd.io/bbolt"
)

// Leg is one employee's part of a call.
type Leg struct {
	N              int       `json:"n"`
	Employee       string    `json:"employee"`
	Extension      string    `json:"extension"`
	Answered       time.Time `json:"answered"`
	Ended          time.Time `json:"ended,omitzero"`
	TalkSeconds    float64   `json:"talk_seconds"`
	Recording      string    `json:"recording,omitempty"`
	RecordingBytes int64     `json:"recording_bytes,omitempty"`
	// RecordingTruncated is set when the disk filled up during the leg: the
	// recording holds its start only.
	RecordingTruncated bool `json:"recording_truncated,omitempty"`
	// TransferredFrom is the employee who transferred the call to this leg.
	TransferredFrom string `json:"transferred_from,omitempty"`
}

// Transfer is one transfer of a call, in order.
type Transfer struct {
	From string    `json:"from"` // employee (or extension) who transferred
	To   string    `json:"to"`   // employee, or the number it went to
	Mode string    `json:"mode"` // blind or attended
	At   time.Time `json:"at"`
}

// Record is one call.
type Record struct {
	ID          string `json:"id"`
	Direction   string `json:"direction"`
	Origin      string `json:"origin,omitempty"` // "click-to-call" for calls placed through the API
	Internal    bool   `json:"internal"`         // never handed to CRM consumers
	Account     string `json:"account,omitempty"`
	TrunkNumber string `json:"trunk_number,omitempty"`
	Outside     string `json:"outside_number,omitempty"` // E.164
	// ClientName and ClientCompany are what a CRM knew of the outside
	// party when the call rang (empty: nobody knew them).
	ClientName    string        `json:"client_name,omitempty"`
	ClientCompany string        `json:"client_company,omitempty"`
	Tracking      *crm.Tracking `json:"tracking,omitempty"`
	Caller        string        `json:"caller"`
	Rung          []string      `json:"rung"` // employees
	AnsweredBy    string        `json:"answered_by,omitempty"`
	Started       time.Time     `json:"started"`
	Ringing       time.Time     `json:"ringing,omitzero"`
	Answered      time.Time     `json:"answered,omitzero"`
	Ended         time.Time     `json:"ended,omitzero"`
	WaitSeconds   float64       `json:"wait_seconds"`
	TalkSeconds   float64       `json:"talk_seconds"`
	Result        string        `json:"result,omitempty"` // answered, no-answer, busy, failed, abandoned, interrupted
	HangupBy      string        `json:"hangup_by,omitempty"`
	Reason        string        `json:"reason,omitempty"`
	Legs          []Leg         `json:"legs"`
	Transfers     []Transfer    `json:"transfers,omitempty"`
	// RTP is what each party sent to callgate's relay.
	RTP *RTP `json:"rtp,omitempty"`
}

// RTP holds per-party media statistics.
type RTP struct {
	Outside  RTPStats `json:"outside"`  // the outside party (or the caller of an internal call)
	Employee RTPStats `json:"employee"` // the employee's phone
}

// RTPStats counts one party's packets.
type RTPStats struct {
	Packets  uint64  `json:"packets"`
	Bytes    uint64  `json:"bytes"`
	Lost     uint64  `json:"lost"`
	JitterMs float64 `json:"jitter_ms"`
}

// Bucket holds the records; keys are start time (8 bytes, ns) + id, so a
// cursor walks them in time order.
var Bucket = store.BucketCalls

// bucket is the records' bucket for writing. Keys arrive almost in order
// (calls are written as they end, keyed by their start), so pages are
// filled to 90% before they split, not bbolt's default half: a year of
// records takes about half the disk, and half as long to back up.
func bucket(tx *bolt.Tx) *bolt.Bucket {
	b := tx.Bucket(Bucket)
	b.FillPercent = 0.9
	return b
}

func key(r *Record) []byte {
	k := make([]byte, 8, 8+len(r.ID))
	binary.BigEndian.PutUint64(k, uint64(r.Started.UnixNano()))
	return append(k, r.ID...)
}

// Store reads and writes records.
type Store struct {
	db *store.Store
	mu sync.Mutex
	ix map[string][]byte // id -> key, filled lazily
	// unsaved lists records waiting in memory for the database (Writer),
	// shown by Get and List meanwhile; nil: none.
	unsaved func() []Record
}

// NewStore wraps the database.
func NewStore(db *store.Store) *Store { return &Store{db: db, ix: map[string][]byte{}} }

// Put writes a record.
func (s *Store) Put(r *Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	k := key(r)
	err = s.db.Update(func(tx *bolt.Tx) error { return bucket(tx).Put(k, b) })
	if err != nil {
		return fmt.Errorf("save call %s: %w", r.ID, err)
	}
	s.mu.Lock()
	s.ix[r.ID] = k
	s.mu.Unlock()
	return nil
}

// PutAll writes records in one transaction: all or none.
func (s *Store) PutAll(rs []Record) error {
	keys := make([][]byte, len(rs))
	vals := make([][]byte, len(rs))
	for i := range rs {
		b, err := json.Marshal(&rs[i])
		if err != nil {
			return err
		}
		keys[i], vals[i] = key(&rs[i]), b
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := bucket(tx)
		for i := range keys {
			if err := b.Put(keys[i], vals[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if len(rs) == 1 {
			return fmt.Errorf("save call %s: %w", rs[0].ID, err)
		}
		return fmt.Errorf("save %d calls: %w", len(rs), err)
	}
	s.mu.Lock()
	for i := range rs {
		s.ix[rs[i].ID] = keys[i]
	}
	s.mu.Unlock()
	return nil
}

// ErrNotFound means no such call.
var ErrNotFound = errors.New("call not found")

// Get reads one record.
func (s *Store) Get(id string) (*Record, error) {
	if r := s.unsavedByID(id); r != nil {
		return r, nil
	}
	s.mu.Lock()
	k, ok := s.ix[id]
	s.mu.Unlock()
	var out *Record
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(Bucket)
		if ok {
			return decode(b.Get(k), &out)
		}
		return b.ForEach(func(k, v []byte) error {
			if bytes.HasSuffix(k, []byte(id)) && len(k) == 8+len(id) {
				return decode(v, &out)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		return nil, ErrNotFound
	}
	return out, nil
}

func decode(v []byte, out **Record) error {
	if v == nil {
		return nil
	}
	var r Record
	if err := json.Unmarshal(v, &r); err != nil {
		return err
	}
	*out = &r
	return nil
}

// Filter selects records for List.
type Filter struct {
	From, To time.Time // start time range; zero means open
	Employee string
	Number   string // E.164 or part of it
	Result   string
	Limit    int // default 50, at most 500; page back with To = the last record's Started
}

// List returns records newest first.
func (s *Store) List(f Filter) ([]Record, error) {
	if f.Limit <= 0 || f.Limit > 500 {
		f.Limit = min(max(f.Limit, 50), 500)
	}
	var out []Record
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(Bucket).Cursor()
		for k, v := c.Last(); k != nil && len(out) < f.Limit; k, v = c.Prev() {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				continue
			}
			if !f.From.IsZero() && r.Started.Before(f.From) {
				break
			}
			if !f.keep(&r) {
				continue
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.withUnsaved(out, f), nil
}

// keep reports whether r passes the filter's conditions other than From.
func (f Filter) keep(r *Record) bool {
	return !((!f.To.IsZero() && !r.Started.Before(f.To)) || (f.Result != "" && r.Result != f.Result) ||
		(f.Number != "" && !strings.Contains(r.Outside, strings.TrimPrefix(f.Number, "+"))) ||
		(f.Employee != "" && !involves(r, f.Employee)))
}

func involves(r *Record, employee string) bool {
	if r.AnsweredBy == employee {
		return true
	}
	for _, e := range r.Rung {
		if e == employee {
			return true
		}
	}
	return false
}

// MarkInterrupted closes records a crash left open and returns their ids.
func (s *Store) MarkInterrupted(now time.Time) ([]string, error) {
	var ids []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(Bucket)
		var fix [][2][]byte
		err := b.ForEach(func(k, v []byte) error {
			var r Record
			if json.Unmarshal(v, &r) != nil || !r.Ended.IsZero() {
				return nil
			}
			r.Ended, r.Result, r.Reason = now, "interrupted", "callgate stopped during the call"
			if !r.Answered.IsZero() {
				r.TalkSeconds = now.Sub(r.Answered).Seconds()
			}
			nb, _ := json.Marshal(&r)
			fix = append(fix, [2][]byte{append([]byte(nil), k...), nb})
			ids = append(ids, r.ID)
			return nil
		})
		if err != nil {
			return err
		}
		for _, f := range fix {
			if err := b.Put(f[0], f[1]); err != nil {
				return err
			}
		}
		return nil
	})
	sort.Strings(ids)
	return ids, err
}
