package sipstack

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"
	"golang.org/x/time/rate"
)

// transportLog is how the SIP library's own records reach callgate's log:
// through callgate's handler (its level and format), without the raw
// message a parse error carries (a scanner's junk, or a phone's digest
// credentials) but with its size, and at most a few warnings and errors a
// second, the rest counted in the next one: a client sending junk as fast
// as it can must not fill the disk.
type transportLog struct {
	next       slog.Handler
	limit      *rate.Limiter
	suppressed *atomic.Uint64
}

// libraryLog is log as the SIP library's records take it.
func libraryLog(log *slog.Logger) *slog.Logger {
	return slog.New(newTransportLog(log.With("component", "sipgo").Handler(), 5, 20))
}

// LibraryLog sends the records the SIP library writes outside any stack
// (its package-wide logger: connection pool and WebSocket reference
// warnings) to log, as a stack's own go. The library allows it only before
// it is first used, so a daemon calls it once at start.
func LibraryLog(log *slog.Logger) {
	sip.SetDefaultLogger(libraryLog(log))
}

// newTransportLog wraps next, allowing perSecond warnings and errors a
// second with bursts of burst.
func newTransportLog(next slog.Handler, perSecond float64, burst int) *transportLog {
	return &transportLog{next: next, limit: rate.NewLimiter(rate.Limit(perSecond), burst), suppressed: new(atomic.Uint64)}
}

func (h *transportLog) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *transportLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn && !h.limit.Allow() {
		h.suppressed.Add(1)
		return nil
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "data" {
			a = slog.Int("data_bytes", len(a.Value.String()))
		}
		out.AddAttrs(a)
		return true
	})
	if n := h.suppressed.Swap(0); n > 0 {
		out.AddAttrs(slog.Uint64("suppressed_before", n))
	}
	return h.next.Handle(ctx, out)
}

func (h *transportLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &transportLog{next: h.next.WithAttrs(attrs), limit: h.limit, suppressed: h.suppressed}
}

func (h *transportLog) WithGroup(name string) slog.Handler {
	return &transportLog{next: h.next.WithGroup(name), limit: h.limit, suppressed: h.suppressed}
}
