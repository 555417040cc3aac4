package opus

/*
#cgo pkg-config: opus ogg
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <opus_multistream.h>
#include <ogg/ogg.h>

// The framing loop is here rather than in Go: a recording is encoded in
// one call, so the thread doing it (at idle priority) never holds one of
// Go's processors while the kernel lets it wait.

enum { CG_IO = -100, CG_FRAMING = -101 };
#define CG_MAX_PACKET 4000

typedef struct {
	OpusMSEncoder *enc;
	ogg_stream_state os;
	ogg_page page;
	FILE *f;
	int channels, frame;       // frame: samples per channel in a packet
	int mul;                   // 48000 / rate
	opus_int16 *pending;       // frame * channels samples
	int npending;              // samples per channel pending
	ogg_int64_t packetno, encoded, written, lookahead;
	int ioerr;                 // errno of the first failed write
	unsigned char packet[CG_MAX_PACKET];
} cg_enc;

// One mono stream per channel, none coupled.
static cg_enc *cg_create(const char *path, opus_int32 rate, int channels, int application, int serial, int frame, int *err) {
	unsigned char mapping[2] = {0, 1};
	cg_enc *e = calloc(1, sizeof(cg_enc));
	if (e == NULL) { *err = OPUS_ALLOC_FAIL; return NULL; }
	e->channels = channels;
	e->frame = frame;
	e->mul = 48000 / rate;
	e->pending = calloc((size_t)frame * channels, sizeof(opus_int16));
	e->enc = opus_multistream_encoder_create(rate, channels, channels, 0, mapping, application, err);
	if (e->enc == NULL || e->pending == NULL || ogg_stream_init(&e->os, serial) != 0) {
		if (e->enc != NULL) { opus_multistream_encoder_destroy(e->enc); *err = OPUS_ALLOC_FAIL; }
		free(e->pending);
		free(e);
		return NULL;
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd >= 0) e->f = fdopen(fd, "wb");
	if (e->f == NULL) {
		*err = CG_IO;
		e->ioerr = errno;
		if (fd >= 0) close(fd);
		opus_multistream_encoder_destroy(e->enc);
		ogg_stream_clear(&e->os);
		free(e->pending);
		int saved = e->ioerr;
		free(e);
		errno = saved;
		return NULL;
	}
	return e;
}

static void cg_destroy(cg_enc *e) {
	opus_multistream_encoder_destroy(e->enc);
	ogg_stream_clear(&e->os);
	if (e->f != NULL) fclose(e->f);
	free(e->pending);
	free(e);
}

// cg_close closes the file: 0, or the errno of what failed.
static int cg_close(cg_enc *e) {
	int rc = 0;
	if (e->f != NULL) {
		if (fclose(e->f) != 0) rc = errno;
		e->f = NULL;
	}
	return e->ioerr ? e->ioerr : rc;
}

static int cg_setup(cg_enc *e, opus_int32 bitrate, int signal, int complexity, int narrow) {
	int err = opus_multistream_encoder_ctl(e->enc, OPUS_SET_BITRATE(bitrate));
	if (err == OPUS_OK) err = opus_multistream_encoder_ctl(e->enc, OPUS_SET_VBR(1));
	if (err == OPUS_OK && signal != 0) err = opus_multistream_encoder_ctl(e->enc, OPUS_SET_SIGNAL(signal));
	if (err == OPUS_OK && complexity >= 0) err = opus_multistream_encoder_ctl(e->enc, OPUS_SET_COMPLEXITY(complexity));
	if (err == OPUS_OK && narrow) err = opus_multistream_encoder_ctl(e->enc, OPUS_SET_MAX_BANDWIDTH(OPUS_BANDWIDTH_NARROWBAND));
	opus_int32 la = 0;
	if (err == OPUS_OK) err = opus_multistream_encoder_ctl(e->enc, OPUS_GET_LOOKAHEAD(&la));
	e->lookahead = la;
	return err;
}

static int cg_lookahead(cg_enc *e) { return (int)e->lookahead; }

enum { CG_PAGEOUT, CG_HOLD, CG_FLUSH };

// cg_put hands one packet to libogg (which copies it) and writes the
// pages it completes.
static int cg_put(cg_enc *e, unsigned char *data, long n, ogg_int64_t granule, int eos, int mode) {
	ogg_packet p;
	memset(&p, 0, sizeof p);
	p.packet = data;
	p.bytes = n;
	p.b_o_s = e->packetno == 0;
	p.e_o_s = eos;
	p.granulepos = granule;
	p.packetno = e->packetno++;
	if (ogg_stream_packetin(&e->os, &p) != 0) return CG_FRAMING;
	if (mode == CG_HOLD) return 0;
	while (mode == CG_FLUSH ? ogg_stream_flush(&e->os, &e->page) : ogg_stream_pageout(&e->os, &e->page)) {
		if (fwrite(e->page.header, 1, e->page.header_len, e->f) != (size_t)e->page.header_len ||
			fwrite(e->page.body, 1, e->page.body_len, e->f) != (size_t)e->page.body_len) {
			if (!e->ioerr) e->ioerr = errno ? errno : EIO;
			return CG_IO;
		}
	}
	return 0;
}

// cg_encode codes the pending frame, padded with silence when short.
// Pages written before the last packet end no later than the audio given,
// so the last page's granule position, which trims the padding, never
// goes back.
static int cg_encode(cg_enc *e, int last, int mode) {
	memset(e->pending + (size_t)e->npending * e->channels, 0, sizeof(opus_int16) * (size_t)(e->frame - e->npending) * e->channels);
	int n = opus_multistream_encode(e->enc, e->pending, e->frame, e->packet, CG_MAX_PACKET);
	if (n < 0) return n;
	e->npending = 0;
	e->encoded += e->frame;
	// The granule position counts the decoder's output, pre-skip included.
	ogg_int64_t granule = e->encoded * e->mul;
	if (last) granule = (e->lookahead + e->written) * e->mul;
	return cg_put(e, e->packet, n, granule, last, mode);
}

static int cg_write(cg_enc *e, const opus_int16 *pcm, long frames) {
	e->written += frames;
	while (frames > 0) {
		long n = e->frame - e->npending;
		if (n > frames) n = frames;
		memcpy(e->pending + (size_t)e->npending * e->channels, pcm, sizeof(opus_int16) * (size_t)n * e->channels);
		e->npending += n;
		pcm += n * e->channels;
		frames -= n;
		if (e->npending == e->frame) {
			int rc = cg_encode(e, 0, CG_PAGEOUT);
			if (rc != 0) return rc;
		}
	}
	return 0;
}

// cg_finish codes the rest: what is pending plus the encoder's lookahead
// in silence, so the last of the audio comes out. Packets past the
// caller's audio are held until the last one, so that no page before the
// last ends after it.
static int cg_finish(cg_enc *e) {
	ogg_int64_t end = e->written + e->lookahead;
	for (;;) {
		int last = e->encoded + e->frame >= end;
		int rc = cg_encode(e, last, last ? CG_FLUSH : CG_HOLD);
		if (rc != 0) return rc;
		if (last) break;
	}
	if (fflush(e->f) != 0) {
		if (!e->ioerr) e->ioerr = errno;
		return CG_IO;
	}
	return 0;
}

static int cg_header(cg_enc *e, unsigned char *data, long n) { return cg_put(e, data, n, 0, 0, CG_FLUSH); }

static const char *cg_strerror(int err) { return opus_strerror(err); }
static const char *cg_version(void) { return opus_get_version_string(); }
*/
import "C"

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"syscall"
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

// Encoder writes one Ogg Opus file. It is not safe for concurrent use.
type Encoder struct {
	e        *C.cg_enc
	path     string
	channels int
	rate     int
	err      error
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
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var rc C.int
	e, errno := C.cg_create(cpath, C.opus_int32(rate), C.int(channels), C.int(app), C.int(rand.Int32()), C.int(rate*ms/1000), &rc)
	if e == nil {
		if rc == C.CG_IO {
			return nil, fmt.Errorf("opus %s: %w", path, errno)
		}
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
	enc := &Encoder{e: e, path: path, channels: channels, rate: rate}
	if rc := C.cg_setup(e, bitrate, C.int(o.Signal), complexity, narrow); rc != C.OPUS_OK {
		enc.abort()
		return nil, fmt.Errorf("opus %s: settings: %s", path, C.GoString(C.cg_strerror(rc)))
	}
	if err := enc.headers(o.Tags); err != nil {
		enc.abort()
		return nil, err
	}
	return enc, nil
}

// headers writes the identification and comment headers (RFC 7845 §5),
// each on a page of its own as the format requires.
func (e *Encoder) headers(tags map[string]string) error {
	preSkip := int(C.cg_lookahead(e.e)) * Rate / e.rate
	head := []byte("OpusHead")
	head = append(head, 1, byte(e.channels))
	head = binary.LittleEndian.AppendUint16(head, uint16(preSkip))
	head = binary.LittleEndian.AppendUint32(head, uint32(e.rate))
	head = append(head, 0, 0) // output gain
	if e.channels == 2 {
		// Family 1: two streams, none coupled, left then right.
		head = append(head, 1, 2, 0, 0, 1)
	} else {
		head = append(head, 0)
	}
	if err := e.check(C.cg_header(e.e, (*C.uchar)(unsafe.Pointer(&head[0])), C.long(len(head)))); err != nil {
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
	return e.check(C.cg_header(e.e, (*C.uchar)(unsafe.Pointer(&comments[0])), C.long(len(comments))))
}

// check turns a C result into an error: an Opus error code, an Ogg
// framing failure or a failed write.
func (e *Encoder) check(rc C.int) error {
	switch {
	case rc == 0:
		return nil
	case rc == C.CG_IO:
		return fmt.Errorf("opus %s: %w", e.path, syscall.Errno(e.e.ioerr))
	case rc == C.CG_FRAMING:
		return fmt.Errorf("opus %s: ogg framing failed", e.path)
	default:
		return fmt.Errorf("opus %s: %s", e.path, C.GoString(C.cg_strerror(rc)))
	}
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
	if len(pcm) == 0 {
		return nil
	}
	e.err = e.check(C.cg_write(e.e, (*C.opus_int16)(unsafe.Pointer(&pcm[0])), C.long(len(pcm)/e.channels)))
	return e.err
}

// Close finishes the file: the delayed tail of the audio, the end of
// stream, the data handed to the kernel (the caller syncs). The file is
// complete only when Close returns nil.
func (e *Encoder) Close() error {
	if e.e == nil {
		return e.err
	}
	err := e.err
	if err == nil {
		err = e.check(C.cg_finish(e.e))
	}
	if errno := C.cg_close(e.e); err == nil && errno != 0 {
		err = fmt.Errorf("opus %s: %w", e.path, syscall.Errno(errno))
	}
	C.cg_destroy(e.e)
	e.e = nil
	e.err = err
	return err
}

func (e *Encoder) abort() {
	C.cg_destroy(e.e)
	e.e = nil
}
