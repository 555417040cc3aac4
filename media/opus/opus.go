// Package opus writes and reads Ogg Opus files through the reference
// libraries: libopus with libopusenc (the Ogg encapsulation opus-tools
// use) to write, libopusfile to read. callgate compresses each recording
// to Ogg Opus after the call; reading back is how it checks a file before
// the original is removed.
//
// Building needs cgo and Debian's libopusenc-dev, libopusfile-dev and
// pkg-config (make deps-build installs them); the binary then needs
// libopusenc0 and libopusfile0.
package opus

/*
#cgo pkg-config: libopusenc opusfile
#include <stdlib.h>
#include <opusenc.h>
#include <opusfile.h>

static int cg_setup(OggOpusEnc *e, opus_int32 bitrate, int signal, int force2, int complexity, int narrow) {
	int err = ope_encoder_ctl(e, OPUS_SET_BITRATE(bitrate));
	if (err != OPE_OK) return err;
	err = ope_encoder_ctl(e, OPUS_SET_VBR(1));
	if (err != OPE_OK) return err;
	if (force2) err = ope_encoder_ctl(e, OPUS_SET_FORCE_CHANNELS(2));
	if (err != OPE_OK) return err;
	if (signal != 0) err = ope_encoder_ctl(e, OPUS_SET_SIGNAL(signal));
	if (err != OPE_OK) return err;
	if (complexity >= 0) err = ope_encoder_ctl(e, OPUS_SET_COMPLEXITY(complexity));
	if (err != OPE_OK) return err;
	if (narrow) err = ope_encoder_ctl(e, OPUS_SET_MAX_BANDWIDTH(OPUS_BANDWIDTH_NARROWBAND));
	return err;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// Rate is the sample rate Ogg Opus decodes to, whatever it was made from.
const Rate = 48000

// Options shape an encoding.
type Options struct {
	// Bitrate in bits per second for all channels together (e.g. 16000
	// for speech); 0 leaves libopus's default.
	Bitrate int
	// Signal hints at the content (Auto, Voice or Music).
	Signal Signal
	// Complexity is libopus's effort, 0 (fastest) to 10; nil leaves its
	// default (10).
	Complexity *int
	// Narrowband limits the coded audio to 4 kHz, all that telephone
	// audio (G.711, 8 kHz) holds: the encoder spends nothing above it.
	Narrowband bool
	// Tags are Vorbis comments (e.g. "TITLE"); values must not hold NUL.
	Tags map[string]string
}

// Signal is the kind of content an encoder is told to expect.
type Signal int

// The signal hints.
const (
	Auto  Signal = 0
	Voice Signal = C.OPUS_SIGNAL_VOICE
	Music Signal = C.OPUS_SIGNAL_MUSIC
)

// Encoder writes one Ogg Opus file. It is not safe for concurrent use.
type Encoder struct {
	enc      *C.OggOpusEnc
	channels int
	path     string
	written  bool
}

// Create starts an Ogg Opus file at path for interleaved 16-bit PCM of
// channels channels at rate Hz (libopusenc resamples to 48 kHz).
func Create(path string, rate, channels int, o Options) (*Encoder, error) {
	if channels < 1 || channels > 2 || rate < 8000 || rate > 192000 {
		return nil, fmt.Errorf("opus %s: %d channels at %d Hz is not supported", path, channels, rate)
	}
	comments := C.ope_comments_create()
	if comments == nil {
		return nil, fmt.Errorf("opus %s: out of memory", path)
	}
	defer C.ope_comments_destroy(comments)
	for k, v := range o.Tags {
		ck, cv := C.CString(k), C.CString(v)
		rc := C.ope_comments_add(comments, ck, cv)
		C.free(unsafe.Pointer(ck))
		C.free(unsafe.Pointer(cv))
		if rc != C.OPE_OK {
			return nil, fmt.Errorf("opus %s: tag %q: %s", path, k, C.GoString(C.ope_strerror(rc)))
		}
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var rc C.int
	enc := C.ope_encoder_create_file(cpath, comments, C.opus_int32(rate), C.int(channels), 0, &rc)
	if enc == nil {
		return nil, fmt.Errorf("opus %s: %s", path, C.GoString(C.ope_strerror(rc)))
	}
	bitrate := C.opus_int32(o.Bitrate)
	if o.Bitrate <= 0 {
		bitrate = C.OPUS_AUTO
	}
	// Two channels stay two: the encoder would otherwise fold a stereo
	// pair to mono at low bitrates.
	force2 := C.int(0)
	if channels == 2 {
		force2 = 1
	}
	complexity, narrow := C.int(-1), C.int(0)
	if o.Complexity != nil {
		complexity = C.int(*o.Complexity)
	}
	if o.Narrowband {
		narrow = 1
	}
	if rc := C.cg_setup(enc, bitrate, C.int(o.Signal), force2, complexity, narrow); rc != C.OPE_OK {
		C.ope_encoder_destroy(enc)
		return nil, fmt.Errorf("opus %s: settings: %s", path, C.GoString(C.ope_strerror(rc)))
	}
	return &Encoder{enc: enc, channels: channels, path: path}, nil
}

// Write encodes interleaved samples (a whole number of frames).
func (e *Encoder) Write(pcm []int16) error {
	if e.enc == nil {
		return errors.New("opus: write after close")
	}
	frames := len(pcm) / e.channels
	if frames == 0 {
		return nil
	}
	if rc := C.ope_encoder_write(e.enc, (*C.opus_int16)(unsafe.Pointer(&pcm[0])), C.int(frames)); rc != C.OPE_OK {
		return fmt.Errorf("opus %s: %s", e.path, C.GoString(C.ope_strerror(rc)))
	}
	e.written = true
	return nil
}

// Close finishes the file: the last packets, the end of stream. The file
// is complete only when Close returns nil.
func (e *Encoder) Close() error {
	if e.enc == nil {
		return nil
	}
	if !e.written {
		// libopusenc 0.2.1 aborts the process when a stream with no audio
		// is drained: an empty recording is one sample of silence.
		if err := e.Write(make([]int16, e.channels)); err != nil {
			C.ope_encoder_destroy(e.enc)
			e.enc = nil
			return err
		}
	}
	rc := C.ope_encoder_drain(e.enc)
	C.ope_encoder_destroy(e.enc)
	e.enc = nil
	if rc != C.OPE_OK {
		return fmt.Errorf("opus %s: %s", e.path, C.GoString(C.ope_strerror(rc)))
	}
	return nil
}

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
