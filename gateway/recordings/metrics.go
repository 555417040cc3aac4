package recordings

import "github.com/prometheus/client_golang/prometheus"

// Collectors are the recording metrics, read from the recorder when
// scraped.
func (l *Library) Collectors() []prometheus.Collector {
	r := l.rec
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_recording_bytes_total", Help: "Audio bytes written to recordings."},
			func() float64 { return float64(r.Bytes.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_recording_dropped_packets_total", Help: "Packets the recorder's queue had no room for."},
			func() float64 { return float64(r.Dropped.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_recording_skipped_total", Help: "Calls not recorded because free disk space was below recording.min_free."},
			func() float64 { return float64(r.Skipped.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_recording_truncated_total", Help: "Recordings stopped early because the disk filled up (free space below recording.min_free or a failed write); the calls went on."},
			func() float64 { return float64(r.Truncated.Load()) }),
	}
}
