package opus

/*
#cgo pkg-config: opus ogg
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <opus_multistream.h>
#include <ogg/ogg.h>

enum { CG_OK = 0, CG_OPEN = -1, CG_NOT_OPUS = -2, CG_HOLE = -3, CG_DECODE = -4, CG_NO_END = -5, CG_ALLOC = -6 };

// cg_check decodes every audio packet of an Ogg Opus file at rate and
// reports how much audio the packets held and what the header and the
// last page say. One logical stream is expected, as callgate writes.
static int cg_check(const char *path, int rate, long long *decoded, long long *granule, int *preskip) {
	FILE *f = fopen(path, "rb");
	if (f == NULL) return CG_OPEN;
	ogg_sync_state oy;
	ogg_stream_state os;
	ogg_page og;
	ogg_packet op;
	OpusMSDecoder *dec = NULL;
	int rc = CG_OK, started = 0, channels = 0, eos = 0;
	long packets = 0;
	int maxFrames = rate * 120 / 1000;
	opus_int16 *pcm = NULL;
	*decoded = 0;
	*granule = -1;
	ogg_sync_init(&oy);
	while (rc == CG_OK && !eos) {
		char *buf = ogg_sync_buffer(&oy, 65536);
		size_t n = fread(buf, 1, 65536, f);
		if (n == 0) break;
		ogg_sync_wrote(&oy, (long)n);
		while (rc == CG_OK && ogg_sync_pageout(&oy, &og) == 1) {
			if (!started) {
				ogg_stream_init(&os, ogg_page_serialno(&og));
				started = 1;
			}
			if (ogg_stream_pagein(&os, &og) != 0) continue; // another stream's page
			if (ogg_page_granulepos(&og) >= 0 && packets >= 2) *granule = ogg_page_granulepos(&og);
			if (ogg_page_eos(&og)) eos = 1;
			int got;
			while (rc == CG_OK && (got = ogg_stream_packetout(&os, &op)) != 0) {
				if (got < 0) { rc = CG_HOLE; break; }
				if (packets == 0) {
					unsigned char *h = op.packet;
					if (op.bytes < 19 || memcmp(h, "OpusHead", 8) != 0) { rc = CG_NOT_OPUS; break; }
					channels = h[9];
					*preskip = h[10] | h[11] << 8;
					unsigned char mapping[255] = {0, 1};
					int streams = 1, coupled = channels == 2;
					if (h[18] != 0) {
						if (op.bytes < 21 + channels) { rc = CG_NOT_OPUS; break; }
						streams = h[19];
						coupled = h[20];
						memcpy(mapping, h + 21, channels);
					}
					int err;
					if (channels < 1) { rc = CG_NOT_OPUS; break; }
					dec = opus_multistream_decoder_create(rate, channels, streams, coupled, mapping, &err);
					pcm = malloc(sizeof(opus_int16) * maxFrames * channels);
					if (dec == NULL || pcm == NULL) { rc = err == OPUS_ALLOC_FAIL || pcm == NULL ? CG_ALLOC : CG_NOT_OPUS; break; }
				} else if (packets > 1) {
					int frames = opus_multistream_decode(dec, op.packet, op.bytes, pcm, maxFrames, 0);
					if (frames < 0) { rc = CG_DECODE; break; }
					*decoded += frames;
				}
				packets++;
			}
		}
	}
	if (rc == CG_OK && (packets < 2 || *granule < 0)) rc = packets < 1 ? CG_NOT_OPUS : CG_NO_END;
	if (rc == CG_OK && !eos) rc = CG_NO_END;
	if (dec != NULL) opus_multistream_decoder_destroy(dec);
	free(pcm);
	if (started) ogg_stream_clear(&os);
	ogg_sync_clear(&oy);
	fclose(f);
	return rc;
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// checkRate is the rate Check decodes at: telephone audio holds nothing
// above it, and decoding there costs a fraction of 48 kHz.
const checkRate = 8000

// Check decodes every packet of the Ogg Opus file at path and returns its
// length in samples per channel at 48 kHz, as its last page says. A file
// with a page missing, a packet that does not decode, no end of stream or
// packets holding less audio than the length it claims is an error.
func Check(path string) (int64, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var decoded, granule C.longlong
	var preskip C.int
	rc := C.cg_check(cpath, checkRate, &decoded, &granule, &preskip)
	switch rc {
	case C.CG_OK:
	case C.CG_OPEN:
		return 0, fmt.Errorf("opus %s: cannot be opened", path)
	case C.CG_NOT_OPUS:
		return 0, fmt.Errorf("opus %s: not an Ogg Opus file", path)
	case C.CG_HOLE:
		return 0, fmt.Errorf("opus %s: a page is missing", path)
	case C.CG_DECODE:
		return 0, fmt.Errorf("opus %s: a packet does not decode", path)
	case C.CG_NO_END:
		return 0, fmt.Errorf("opus %s: the stream has no end (cut short)", path)
	default:
		return 0, fmt.Errorf("opus %s: out of memory", path)
	}
	length := int64(granule) - int64(preskip)
	if held := int64(decoded) * Rate / checkRate; length < 0 || held < int64(granule) {
		return 0, fmt.Errorf("opus %s: its packets hold %d samples, its last page claims %d", path, held, int64(granule))
	}
	return length, nil
}
