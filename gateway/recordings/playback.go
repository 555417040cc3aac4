package recordings

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrUnknown means a name that cannot be a recording of this library.
var ErrUnknown = errors.New("no such recording")

// File is a recording opened for playback.
type File struct {
	io.ReadSeekCloser
	Name    string    // file name offered to whoever downloads it
	Type    string    // Content-Type
	Size    int64     // bytes
	ModTime time.Time // when the recording was last written (Last-Modified)
}

// Open opens a recording by the name its call record keeps. A recording
// deleted by the janitor, or never written, is an error wrapping
// fs.ErrNotExist; a name outside the library is ErrUnknown.
func (l *Library) Open(name string) (*File, error) {
	if !filepath.IsLocal(name) {
		return nil, fmt.Errorf("recording %q: %w", name, ErrUnknown)
	}
	// The record keeps the name the recording was made under; once
	// compressed it is the Ogg Opus file beside it.
	path, typ := filepath.Join(l.cfg.Dir, name), "audio/wav"
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && strings.HasSuffix(path, ".wav") {
		path, typ = strings.TrimSuffix(path, ".wav")+".opus", "audio/ogg; codecs=opus"
		f, err = os.Open(path)
	}
	if errors.Is(err, fs.ErrNotExist) && l.arch != nil {
		return l.arch.open(name)
	}
	if err != nil {
		return nil, fmt.Errorf("open recording: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open recording: %w", err)
	}
	return &File{ReadSeekCloser: f, Name: filepath.Base(path), Type: typ, Size: st.Size(), ModTime: st.ModTime()}, nil
}
