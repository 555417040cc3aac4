package sipstack

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"golang.org/x/time/rate"
)

// A flood of parse errors leaves a few lines in callgate's format, none
// with the raw message (here carrying digest credentials), and the next
// line allowed says how many were left out.
func TestTransportLogThrottlesAndStripsMessages(t *testing.T) {
	var buf bytes.Buffer
	h := newTransportLog(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}), 1e-9, 3)
	log := slog.New(h).With("caller", "Transport<WS>")
	junk := "REGISTER sip:x SIP/2.0\r\nAuthorization: Digest username=\"101\", response=\"0123456789abcdef\"\r\nCSeq: x\r\n\r\n"
	for range 10 {
		log.Error("failed to parse", "error", "bad CSeq", "data", junk)
	}
	log.Debug("below the level", "data", junk)
	h.limit.SetLimit(rate.Inf)
	log.Error("failed to parse", "error", "bad CSeq", "data", junk)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines for 11 errors with a burst of 3 (and one let through later):\n%s", len(lines), buf.String())
	}
	if strings.Contains(buf.String(), "Digest") || strings.Contains(buf.String(), "0123456789abcdef") {
		t.Fatalf("the raw message reached the log:\n%s", buf.String())
	}
	for i, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("line %d is not callgate's JSON: %s", i, l)
		}
		if rec["data_bytes"] != float64(len(junk)) || rec["caller"] != "Transport<WS>" || rec["error"] != "bad CSeq" {
			t.Fatalf("line %d: %v", i, rec)
		}
		if want := i == 3; (rec["suppressed_before"] == float64(7)) != want {
			t.Fatalf("line %d: suppressed_before %v", i, rec["suppressed_before"])
		}
	}
}
