package recordings

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Collectors are the recording metrics, read from the recorder and the
// disk when scraped.
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
		// Free space against the guard's floor, so an alert can fire before
		// recordings stop rather than after (callgate_recording_skipped_total).
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_recording_free_bytes", Help: "Free space of the filesystem holding recording.dir, in bytes."},
			func() float64 { return float64(l.guard.FreeBytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_recording_encode_backlog", Help: "Recordings waiting to be compressed to Ogg Opus (recording.format = \"opus\")."},
			func() float64 { return float64(l.enc.backlog.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_recording_encoded_total", Help: "Recordings compressed to Ogg Opus and checked; their WAVs are gone."},
			func() float64 { return float64(l.enc.done.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_recording_encode_cpu_seconds_total", Help: "CPU time the encoders spent compressing recordings (at idle priority)."},
			func() float64 { return time.Duration(l.enc.cpu.Load()).Seconds() }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_recording_encode_failures_total", Help: "Recordings that could not be compressed; their WAVs are kept and tried again at the next start."},
			func() float64 { return float64(l.enc.failed.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_archive_queue_depth", Help: "Recordings waiting to be uploaded to the archive ([archive])."},
			func() float64 { return float64(l.archiveQueue()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_archive_oldest_seconds", Help: "Age of the oldest recording waiting for the archive (0: none)."},
			func() float64 {
				if a := l.arch; a != nil && a.oldest.Load() > 0 {
					return time.Since(time.Unix(0, a.oldest.Load())).Seconds()
				}
				return 0
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "callgate_archive_failures_total", Help: "Uploads to the archive that failed and will be retried (the local copy stays)."},
			func() float64 {
				if a := l.arch; a != nil {
					return float64(a.failures.Load())
				}
				return 0
			}),
		// The storage view of the admin page, counted at most once a minute.
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_recording_local_bytes", Help: "Bytes of recordings on the local disk."},
			func() float64 { return float64(l.Usage().Bytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_archive_bytes", Help: "Bytes of recordings in the archive's bucket."},
			func() float64 {
				if a := l.Usage().Archive; a != nil {
					return float64(a.Bytes)
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_recording_bytes_per_day", Help: "Bytes recorded per day, the mean of the last seven days, local and archived."},
			func() float64 {
				var sum int64
				for _, d := range l.Usage().Week {
					sum += d.Bytes
				}
				return float64(sum) / 7
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_recording_days_left", Help: "Days until the free space falls to recording.min_free at the rate the local disk took recordings over the last week (0: it does not grow)."},
			func() float64 { return l.Usage().DaysLeft }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "callgate_recording_min_free_bytes", Help: "recording.min_free in bytes: below it no recording starts and those in progress stop. 0 when the guard is off or recording is disabled."},
			func() float64 { return float64(l.minFree()) }),
	}
}

// minFree is the floor recordings keep to; 0 when nothing is recorded, as
// there is then nothing for the floor to stop.
func (l *Library) minFree() uint64 {
	if !l.cfg.Enabled {
		return 0
	}
	return l.guard.MinFree
}

// archiveQueue is how many recordings wait for the archive (0 without one).
func (l *Library) archiveQueue() int64 {
	if l.arch == nil {
		return 0
	}
	return l.arch.depth.Load()
}
