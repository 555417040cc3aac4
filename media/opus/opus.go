// Package opus writes and reads Ogg Opus files through the reference
// libraries: libopus to encode, libogg to frame the pages, libopusfile to
// read. callgate compresses each recording to Ogg Opus after the call;
// reading back is how it checks a file before the original is removed.
//
// A two-channel file holds two independent mono streams (RFC 7845 channel
// mapping family 1, no coupled pair): a recording's channels are two
// people, and a coupled stereo stream at speech bitrates codes them as mid
// and side and lets one party leak into the other's channel.
//
// Building needs cgo and Debian's libopus-dev, libogg-dev, libopusfile-dev
// and pkg-config (make deps-build installs them); the binary then needs
// libopus0, libogg0 and libopusfile0.
package opus

/*
#cgo pkg-config: opus ogg opusfile
#include <stdlib.h>
#include <opusfile.h>
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Rate is the sample rate Ogg Opus decodes to, whatever it was made from.
const Rate = 48000

// File is an Ogg Opus file opened for reading.
type File struct {
	of       *C.OggOpusFile
	channels int
	path     string
}

// Open opens an Ogg Opus file; a file that is not one is an error.
func Open(path string) (*File, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var rc C.int
	of := C.op_open_file(cpath, &rc)
	if of == nil {
		return nil, fmt.Errorf("opus %s: not a readable Ogg Opus file (error %d)", path, int(rc))
	}
	return &File{of: of, channels: int(C.op_channel_count(of, -1)), path: path}, nil
}

// Channels is the number of channels.
func (f *File) Channels() int { return f.channels }

// Samples is the length in samples per channel at 48 kHz (pre-skip left
// out), as the file's last granule position says.
func (f *File) Samples() (int64, error) {
	n := int64(C.op_pcm_total(f.of, -1))
	if n < 0 {
		return 0, fmt.Errorf("opus %s: length unknown (error %d)", f.path, n)
	}
	return n, nil
}

// ReadAll decodes the whole file: interleaved samples at 48 kHz.
func (f *File) ReadAll() ([]int16, error) {
	var out []int16
	buf := make([]int16, 5760*f.channels) // 120 ms, the longest Opus packet
	for {
		n := C.op_read(f.of, (*C.opus_int16)(unsafe.Pointer(&buf[0])), C.int(len(buf)), nil)
		if n == 0 {
			return out, nil
		}
		if n < 0 {
			return out, fmt.Errorf("opus %s: decoding: error %d", f.path, int(n))
		}
		out = append(out, buf[:int(n)*f.channels]...)
	}
}

// Close releases the file.
func (f *File) Close() {
	if f.of != nil {
		C.op_free(f.of)
		f.of = nil
	}
}

// Channels8k reads a two-channel file for checking what it holds: each
// channel at 8 kHz (the mean of every six samples) in [-1, 1], and the
// length in seconds.
func Channels8k(path string) (left, right []float64, seconds float64, err error) {
	f, err := Open(path)
	if err != nil {
		return nil, nil, 0, err
	}
	defer f.Close()
	if f.Channels() != 2 {
		return nil, nil, 0, fmt.Errorf("opus %s: %d channels, not two", path, f.Channels())
	}
	pcm, err := f.ReadAll()
	if err != nil {
		return nil, nil, 0, err
	}
	for i := 0; i+11 < len(pcm); i += 12 {
		var l, r float64
		for j := 0; j < 12; j += 2 {
			l, r = l+float64(pcm[i+j]), r+float64(pcm[i+j+1])
		}
		left, right = append(left, l/6/32768), append(right, r/6/32768)
	}
	return left, right, float64(len(pcm)/2) / Rate, nil
}
