package recordings

import (
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"callgate/media/record"
)

// A reload's retention and min_free apply to the next sweep and the next
// recording.
func TestSetLimits(t *testing.T) {
	dir := t.TempDir()
	l := New(Config{Enabled: true, Dir: dir, Retention: 30 * 24 * time.Hour})
	disk := &fakeDisk{}
	disk.free.Store(1 << 30)
	l.guard.free = disk.statfs
	now := time.Date(2026, 6, 15, 12, 0, 0, 0, time.Local)
	week := recordAt(t, l, "week", now.Add(-8*24*time.Hour))
	if deleted, _ := l.Sweep(now); len(deleted) != 0 {
		t.Fatalf("deleted %v within 30 days", deleted)
	}
	l.SetLimits(7*24*time.Hour, 2<<30)
	if deleted, _ := l.Sweep(now); !slices.Equal(deleted, []string{week}) {
		t.Fatalf("deleted %v with a 7-day retention, want %s", deleted, week)
	}
	if _, err := os.Stat(week); err == nil {
		t.Fatal("the file is still there")
	}
	if _, err := l.Start("c", 1, now); !errors.Is(err, record.ErrLowDisk) {
		t.Fatalf("1 GiB free under the new min_free of 2 GiB: %v, want ErrLowDisk", err)
	}
	l.SetLimits(7*24*time.Hour, 0)
	rec, err := l.Start("c", 1, now)
	if err != nil {
		t.Fatalf("min_free 0: %v", err)
	}
	rec.Close()
}
