package store

import (
	"errors"
	"testing"
)

func TestBucketApplyAndEach(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := s.Bucket(BucketBindings)
	if err := b.Apply(map[string][]byte{"101": []byte("a"), "102": []byte("b"), "103": []byte("c")}); err != nil {
		t.Fatal(err)
	}
	if err := b.Apply(map[string][]byte{"102": nil, "103": []byte("c2"), "104": nil}); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	if err := b.Each(func(k string, v []byte) error { got[k] = string(v); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["101"] != "a" || got["103"] != "c2" {
		t.Fatalf("bucket holds %v", got)
	}
	stop := errors.New("stop")
	n := 0
	if err := b.Each(func(string, []byte) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("an error from fn: %v after %d", err, n)
	}
}
