package siptest

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// CorpusDir is the shared seed corpus of SIP messages (RFC 4475 torture
// messages and the crashers found on a LAN), relative to the module root.
const CorpusDir = "testdata/fuzz/sip"

// Messages returns the shared SIP seed messages by file name. It looks for
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
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		out[filepath.Base(f)] = b
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
