// Command histgen fills a callgate database with call records for
// benchmarks (bench/backup-bench.sh): -calls records over the last year, in
// the shape the call model writes them (inbound and outbound, answered and
// missed, one or two legs with recordings and RTP statistics), through the
// calls store's bulk write. It reports the time taken and the file's size.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"callgate/gateway/calls"
	"callgate/gateway/store"
)

func main() {
	dir := flag.String("data", "", "data_dir to create the database in (required; must hold no database yet)")
	n := flag.Int("calls", 1000000, "call records to write")
	batch := flag.Int("batch", 5000, "records per write transaction")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "histgen: -data DIR is required")
		os.Exit(2)
	}
	db, err := store.Open(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "histgen:", err)
		os.Exit(1)
	}
	st := calls.NewStore(db)
	start := time.Now()
	t0 := start.Add(-365 * 24 * time.Hour)
	step := 365 * 24 * time.Hour / time.Duration(max(*n, 1))
	recs := make([]calls.Record, 0, *batch)
	for i := range *n {
		recs = append(recs, record(i, t0.Add(time.Duration(i)*step)))
		if len(recs) == *batch || i == *n-1 {
			if err := st.PutAll(recs); err != nil {
				fmt.Fprintln(os.Stderr, "histgen:", err)
				os.Exit(1)
			}
			recs = recs[:0]
		}
	}
	took := time.Since(start)
	if err := db.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "histgen:", err)
		os.Exit(1)
	}
	fi, err := os.Stat(db.Path())
	if err != nil {
		fmt.Fprintln(os.Stderr, "histgen:", err)
		os.Exit(1)
	}
	fmt.Printf("histgen: %d call records written in %s: %s, %d bytes (%.0f MiB)\n", *n, took.Round(time.Millisecond), db.Path(), fi.Size(), float64(fi.Size())/(1<<20))
}

// record is the i-th call, started at at.
func record(i int, at time.Time) calls.Record {
	emp := fmt.Sprint("e", 30000+i%200)
	ext := fmt.Sprint(30000 + i%200)
	r := calls.Record{ID: fmt.Sprintf("%08x-hist-%d", i, i), Direction: "inbound", Account: "acc" + ext, TrunkNumber: "+74951234567",
		Outside: fmt.Sprintf("+7916%07d", i%9999999), Caller: fmt.Sprintf("7916%07d", i%9999999), Rung: []string{emp},
		Started: at, Ringing: at.Add(200 * time.Millisecond)}
	if i%3 == 0 {
		r.Direction, r.Caller = "outbound", ext
	}
	if i%5 == 4 { // missed
		r.Ended, r.Result, r.WaitSeconds, r.HangupBy = at.Add(20*time.Second), "no-answer", 20, "outside"
		return r
	}
	ans, end := at.Add(5*time.Second), at.Add(time.Duration(30+i%600)*time.Second)
	r.AnsweredBy, r.Answered, r.Ended, r.Result, r.HangupBy = emp, ans, end, "answered", "employee"
	r.WaitSeconds, r.TalkSeconds = 5, end.Sub(ans).Seconds()
	r.Legs = []calls.Leg{{N: 1, Employee: emp, Extension: ext, Answered: ans, Ended: end, TalkSeconds: r.TalkSeconds,
		Recording: at.Format("2006/01/02/") + r.ID + "-1.wav", RecordingBytes: int64(r.TalkSeconds * 32000)}}
	stats := calls.RTPStats{Packets: uint64(r.TalkSeconds * 50), Bytes: uint64(r.TalkSeconds * 8000), JitterMs: 0.4}
	r.RTP = &calls.RTP{Outside: stats, Employee: stats}
	return r
}
