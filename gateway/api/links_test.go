package api

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The link a CRM keeps plays as long as the recording exists: 30 and 400
// days later it still does, while a console link (link_ttl) has expired;
// once retention deletes the file it answers 410 Gone; a lasting link
// signed for one recording does not open another.
func TestCRMLinkLastsAsLongAsTheRecording(t *testing.T) {
	f := newFixture(t)
	lasting := f.links.Lasting("c1-1")
	short, _ := f.links.Link("c1-1")
	path := func(u string) string {
		p, _ := url.Parse(u)
		return p.RequestURI()
	}
	for _, days := range []int{30, 400} {
		f.nowMu.Lock()
		f.now = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC).AddDate(0, 0, days)
		f.nowMu.Unlock()
		if res, b := f.do(t, "GET", path(lasting), ""); res.StatusCode != 200 {
			t.Fatalf("%d days on, the CRM's link: %d %s", days, res.StatusCode, b)
		}
		if res, _ := f.do(t, "GET", path(short), ""); res.StatusCode != 403 {
			t.Fatalf("%d days on, a console link: %d, want 403 (expired)", days, res.StatusCode)
		}
	}
	other := strings.Replace(path(lasting), "c1-1", "c2-1", 1)
	if res, _ := f.do(t, "GET", other, ""); res.StatusCode != 403 {
		t.Fatalf("c1's lasting signature on c2: %d, want 403", res.StatusCode)
	}
	if err := os.Remove(filepath.Join(f.dir, "2026/11/22/c1-1.wav")); err != nil {
		t.Fatal(err)
	}
	if res, b := f.do(t, "GET", path(lasting), ""); res.StatusCode != 410 || errCode(b) != "recording_deleted" {
		t.Fatalf("the deleted recording's link: %d %s, want 410 recording_deleted", res.StatusCode, b)
	}
}
