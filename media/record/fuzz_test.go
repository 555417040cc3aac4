package record

import (
	"os"
	"path/filepath"
	"testing"

	"callgate/media/g711"
)

// FuzzRepair feeds arbitrary files to the WAV reader and repair: neither
// may panic, repair accepts exactly what the reader accepts, and a repaired
// file's header matches its data.
func FuzzRepair(f *testing.F) {
	valid := append(header(g711.PCMA, 4), 1, 2, 3, 4, 5, 6, 7, 8)
	f.Add(valid)
	f.Add(append(header(g711.PCMU, 40108), make([]byte, 24517)...)) // header claims more, half frame at the end
	f.Add(append(header(g711.PCMA, 0), make([]byte, 101)...))       // header claims less
	f.Add(header(g711.PCMA, 0))
	f.Add(header(g711.PCMA, 0)[:40])
	f.Add([]byte("RIFF\x00\x00\x00\x00WAVEfmt "))
	f.Add([]byte{})
	bad := header(g711.PCMA, 2)
	bad[20] = 1 // PCM, not G.711
	f.Add(bad)
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "f.wav")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, rerr := ReadInfo(p)
		l, r, cerr := Channels(p)
		if (rerr == nil) != (cerr == nil) || len(l) != len(r) {
			t.Fatalf("ReadInfo %v, Channels %v (%d/%d samples)", rerr, cerr, len(l), len(r))
		}
		frames, err := Repair(p)
		if (err == nil) != (rerr == nil) {
			t.Fatalf("ReadInfo %v but Repair %v", rerr, err)
		}
		if err != nil {
			return
		}
		info, err := ReadInfo(p)
		if err != nil || info.Frames != frames {
			t.Fatalf("after repair: %+v %v, repair said %d", info, err, frames)
		}
		st, _ := os.Stat(p)
		if st.Size() != headerLen+2*int64(frames) {
			t.Fatalf("repaired header says %d frames, file %d bytes", frames, st.Size())
		}
		if l, _, _ := Channels(p); len(l) != int(frames) {
			t.Fatalf("%d samples after repair, %d frames", len(l), frames)
		}
	})
}
