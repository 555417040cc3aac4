package calls

import (
	"encoding/json"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Missed is an inbound call nobody answered, with why and whether someone
// has since talked to the client.
type Missed struct {
	Record
	// Handled is set once a later call with the client was answered: a
	// call-back that got through, or the client calling again and
	// getting through.
	Handled bool `json:"handled"`
	// Why is the reason: the call's result (no-answer, busy, abandoned,
	// failed), or out-of-hours when it came outside business hours.
	Why string `json:"why"`
}

// MissedFilter selects missed calls.
type MissedFilter struct {
	Employee string // only calls that rang this employee ("": everyone's)
	Open     bool   // only those not handled yet
	Since    time.Time
	Limit    int // default 100, at most 1000
	// OutOfHours tells whether a time is outside business hours (nil:
	// none configured).
	OutOfHours func(time.Time) bool
}

// missedResults are the ends of an inbound call that count as missed.
var missedResults = map[string]bool{"no-answer": true, "busy": true, "abandoned": true, "failed": true}

// scan walks the records newest first from since, stopping when fn says so.
func (s *Store) scan(since time.Time, fn func(*Record) bool) error {
	return s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(Bucket).Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				continue
			}
			if !since.IsZero() && r.Started.Before(since) {
				return nil
			}
			if !fn(&r) {
				return nil
			}
		}
		return nil
	})
}

// Missed lists missed inbound calls newest first. Walking back in time, a
// number with an answered call is remembered, so each earlier missed call
// from it is handled.
func (s *Store) Missed(f MissedFilter) ([]Missed, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = min(max(f.Limit, 100), 1000)
	}
	talked := map[string]bool{}
	var out []Missed
	err := s.scan(f.Since, func(r *Record) bool {
		if r.Internal || r.Outside == "" || r.Ended.IsZero() {
			return true
		}
		if !r.Answered.IsZero() {
			talked[r.Outside] = true
			return true
		}
		if r.Direction != "inbound" || !missedResults[r.Result] || (f.Employee != "" && !involves(r, f.Employee)) {
			return true
		}
		m := Missed{Record: *r, Handled: talked[r.Outside], Why: r.Result}
		if f.OutOfHours != nil && f.OutOfHours(r.Started) {
			m.Why = "out-of-hours"
		}
		if !f.Open || !m.Handled {
			out = append(out, m)
		}
		return len(out) < f.Limit
	})
	return out, err
}

// EmployeeStats are one employee's figures for a period.
type EmployeeStats struct {
	Employee     string  `json:"employee"`
	Inbound      int     `json:"inbound"`
	Outbound     int     `json:"outbound"`
	Answered     int     `json:"answered"` // inbound calls they answered
	Missed       int     `json:"missed"`   // inbound calls that rang them and nobody answered
	TalkSeconds  float64 `json:"talk_seconds"`
	AvgTalk      float64 `json:"avg_talk_seconds"`
	AvgWait      float64 `json:"avg_wait_seconds"` // before they answered
	talked, wait int
}

// Day is one day's count of external calls, answered and missed.
type Day struct {
	Date     string `json:"date"` // YYYY-MM-DD in the report's zone
	Calls    int    `json:"calls"`
	Answered int    `json:"answered"`
	Missed   int    `json:"missed"`
}

// Stats are the figures per employee and per day for [from, to).
type Stats struct {
	Employees []EmployeeStats `json:"employees"`
	Days      []Day           `json:"days"`
}

// Stats computes per-employee and per-day figures of external calls that
// started in [from, to), days in loc. With employee set, only their calls.
func (s *Store) Stats(from, to time.Time, loc *time.Location, employee string) (Stats, error) {
	per := map[string]*EmployeeStats{}
	days := map[string]*Day{}
	get := func(id string) *EmployeeStats {
		e := per[id]
		if e == nil {
			e = &EmployeeStats{Employee: id}
			per[id] = e
		}
		return e
	}
	err := s.scan(from, func(r *Record) bool {
		if !r.Started.Before(to) || r.Internal || r.Ended.IsZero() {
			return true
		}
		if employee != "" && !involves(r, employee) {
			return true
		}
		d := r.Started.In(loc).Format("2006-01-02")
		day := days[d]
		if day == nil {
			day = &Day{Date: d}
			days[d] = day
		}
		day.Calls++
		missed := r.Direction == "inbound" && r.Answered.IsZero() && missedResults[r.Result]
		if !r.Answered.IsZero() {
			day.Answered++
		} else if missed {
			day.Missed++
		}
		counted := map[string]bool{}
		for _, l := range r.Legs {
			e := get(l.Employee)
			if l.Employee == "" {
				continue
			}
			e.TalkSeconds += l.TalkSeconds
			e.talked++
			if !counted[l.Employee] {
				counted[l.Employee] = true
				if r.Direction == "inbound" {
					e.Inbound++
					e.Answered++
				} else {
					e.Outbound++
				}
			}
			if l.N == 1 && r.Direction == "inbound" {
				e.AvgWait += r.WaitSeconds
				e.wait++
			}
		}
		if missed {
			for _, id := range r.Rung {
				if !counted[id] {
					counted[id] = true
					e := get(id)
					e.Inbound++
					e.Missed++
				}
			}
		}
		if r.Direction == "outbound" && len(r.Legs) == 0 {
			for _, id := range r.Rung {
				if !counted[id] {
					counted[id] = true
					get(id).Outbound++
				}
			}
		}
		return true
	})
	out := Stats{Employees: []EmployeeStats{}, Days: []Day{}}
	for id, e := range per {
		if id == "" || (employee != "" && id != employee) {
			continue
		}
		if e.talked > 0 {
			e.AvgTalk = e.TalkSeconds / float64(e.talked)
		}
		if e.wait > 0 {
			e.AvgWait /= float64(e.wait)
		}
		out.Employees = append(out.Employees, *e)
	}
	sort.Slice(out.Employees, func(i, j int) bool { return out.Employees[i].Employee < out.Employees[j].Employee })
	for d := from.In(loc); d.Before(to); d = d.AddDate(0, 0, 1) {
		key := d.Format("2006-01-02")
		if day := days[key]; day != nil {
			out.Days = append(out.Days, *day)
		} else {
			out.Days = append(out.Days, Day{Date: key})
		}
	}
	return out, err
}
