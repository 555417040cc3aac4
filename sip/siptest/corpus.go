package siptest

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// CorpusDir holds the shared seed messages found on a LAN (crashers and
// ordinary requests), relative to the module root; TortureDir the RFC 4475
// torture messages (valid/ and invalid/).
const (
	CorpusDir  = "testdata/fuzz/sip"
	TortureDir = "testdata/fuzz/rfc4475"
)

// Messages returns the shared SIP seed messages by directory and file name. It looks for
// the corpus from the test's directory upwards, so any package can use it.
func Messages(tb testing.TB) map[string][]byte {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatalf("no go.mod above the test directory: cannot find %s", CorpusDir)
		}
		dir = parent
	}
	files, err := filepath.Glob(filepath.Join(dir, CorpusDir, "*.sip"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no seed messages in %s: %v", CorpusDir, err)
	}
	for _, sub := range []string{"valid", "invalid"} {
		more, err := filepath.Glob(filepath.Join(dir, TortureDir, sub, "*.dat"))
		if err != nil || len(more) == 0 {
			tb.Fatalf("no RFC 4475 messages in %s/%s: %v", TortureDir, sub, err)
		}
		files = append(files, more...)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		out[filepath.Base(filepath.Dir(f))+"/"+filepath.Base(f)] = b
	}
	return out
}

// AddMessages adds every shared seed message to a fuzz target's corpus, in
// a stable order.
func AddMessages(f *testing.F) {
	f.Helper()
	msgs := Messages(f)
	names := make([]string, 0, len(msgs))
	for n := range msgs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f.Add(msgs[n])
	}
}
