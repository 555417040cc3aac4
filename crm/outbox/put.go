package outbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DefaultMaxUnsaved is generous: a few events per call, a few KiB each,
// covers days of an office's calls before anything is lost.
const DefaultMaxUnsaved = 100000

// ErrOverflow means operations were lost: the database could not be
// written for so long that the memory queue filled up.
var ErrOverflow = errors.New("operations lost: the database cannot be written and the memory queue is full")

// Put stores items for delivery, in one transaction. An item whose key was
// stored before (delivered or not) is skipped: the same operation is never
// queued twice. If the database cannot be written the items are held in
// memory and saved by Run as soon as it can (Status says so); Put fails
// only for an item without a key, or with ErrOverflow when the memory
// queue is full (the error names what is lost).
func (o *Outbox) Put(items ...Item) error {
	for i := range items {
		if items[i].Key == "" {
			return fmt.Errorf("outbox %s: put: item without an idempotency key", o.name)
		}
	}
	o.mu.Lock()
	behind := len(o.unsaved) > 0
	if behind {
		// Behind operations that wait for the disk: keep their order.
		err := o.hold(items)
		o.mu.Unlock()
		o.kick()
		return err
	}
	o.mu.Unlock()
	added, err := o.save(items)
	if err != nil {
		o.mu.Lock()
		o.saveFailed(err, time.Now())
		if o.stopped {
			// Run has ended (shutdown): nothing would save them later.
			o.lost += uint64(len(items))
			o.mu.Unlock()
			return err
		}
		herr := o.hold(items)
		o.mu.Unlock()
		o.kick()
		return herr
	}
	o.queued(added)
	return nil
}

// save writes items to the pending bucket in one transaction.
func (o *Outbox) save(items []Item) ([]*meta, error) {
	var added []*meta
	now := time.Now()
	err := o.db.Update(func(tx *bolt.Tx) error {
		added = added[:0]
		pending, keys := o.bucket(tx, "pending"), o.bucket(tx, "keys")
		for i := range items {
			it := items[i]
			if keys.Get([]byte(it.Key)) != nil {
				continue
			}
			seq, err := pending.NextSequence()
			if err != nil {
				return err
			}
			it.Seq, it.Created, it.Attempts, it.NextTry = seq, now, 0, time.Time{}
			v, err := json.Marshal(&it)
			if err != nil {
				return err
			}
			if err := pending.Put(seqKey(seq), v); err != nil {
				return err
			}
			if err := keys.Put([]byte(it.Key), seqKey(seq)); err != nil {
				return err
			}
			added = append(added, &meta{seq: seq, call: it.Call, kind: it.Kind, created: now})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("outbox %s: put: %w", o.name, err)
	}
	return added, nil
}

func (o *Outbox) queued(added []*meta) {
	if len(added) > 0 {
		o.mu.Lock()
		o.pending = append(o.pending, added...)
		o.mu.Unlock()
		o.kick()
	}
}

// hold keeps items the database refused, within MaxUnsaved; o.mu is held.
func (o *Outbox) hold(items []Item) error {
	room := o.opt.MaxUnsaved - len(o.unsaved)
	if room >= len(items) {
		o.unsaved = append(o.unsaved, items...)
		return nil
	}
	room = max(room, 0)
	o.unsaved = append(o.unsaved, items[:room]...)
	var lost []string
	for _, it := range items[room:] {
		lost = append(lost, it.Call+"/"+it.Kind)
	}
	o.lost += uint64(len(lost))
	return fmt.Errorf("outbox %s: %w: %v", o.name, ErrOverflow, lost)
}

// saveFailed notes a failed write; o.mu is held.
func (o *Outbox) saveFailed(err error, now time.Time) {
	o.writeErrs++
	o.lastWriteErr = err.Error()
	o.saveFails++
	d := o.opt.SaveMinBackoff << min(o.saveFails-1, 16)
	if d > o.opt.SaveMaxBackoff || d <= 0 {
		d = o.opt.SaveMaxBackoff
	}
	o.saveAt = now.Add(d)
	if o.failingSince.IsZero() {
		o.failingSince = now
		o.opt.Log.Error("CRM operations not saved: kept in memory and retried until the database can be written",
			"crm", string(o.name), "error", err)
	}
}

// saveHeld stores what is held in memory once it is due, and says how long
// until the next attempt (-1: nothing held).
func (o *Outbox) saveHeld(now time.Time) time.Duration {
	o.mu.Lock()
	if len(o.unsaved) == 0 {
		o.mu.Unlock()
		return -1
	}
	if now.Before(o.saveAt) {
		defer o.mu.Unlock()
		return o.saveAt.Sub(now)
	}
	items := o.unsaved[:len(o.unsaved):len(o.unsaved)]
	o.mu.Unlock()
	added, err := o.save(items)
	o.mu.Lock()
	if err != nil {
		o.saveFailed(err, now)
		d := o.saveAt.Sub(now)
		o.mu.Unlock()
		return d
	}
	// Put may have held more meanwhile: those stay, in order.
	o.unsaved = append([]Item(nil), o.unsaved[len(items):]...)
	o.opt.Log.Info("CRM operations kept in memory saved: the database can be written again",
		"crm", string(o.name), "operations", len(items), "failed_attempts", o.saveFails,
		"waited", now.Sub(o.failingSince).Round(time.Second).String())
	o.saveFails, o.failingSince = 0, time.Time{}
	o.mu.Unlock()
	o.queued(added)
	return 0
}

// stopHeld makes a last attempt to save what is held in memory and logs
// what is lost.
func (o *Outbox) stopHeld() {
	o.mu.Lock()
	o.saveAt, o.stopped = time.Time{}, true
	o.mu.Unlock()
	if o.saveHeld(time.Now()) < 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, it := range o.unsaved {
		o.opt.Log.Error("CRM operation lost at shutdown: the database could not be written",
			"crm", string(o.name), "call_id", it.Call, "kind", it.Kind, "error", o.lastWriteErr)
	}
	o.lost += uint64(len(o.unsaved))
	o.unsaved = nil
}
