package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"callgate/media/g711"
)

// The file is a stereo 8 kHz G.711 WAV stored as-is: WAVE_FORMAT_ALAW (6)
// or WAVE_FORMAT_MULAW (7), 8 bits per sample, with the fact chunk that
// non-PCM WAV requires. Frames are interleaved left (side 0), right (side 1).
const (
	headerLen   = 58
	offRIFFSize = 4
	offFact     = 46
	offDataSize = 54
)

func formatTag(pt uint8) uint16 {
	if pt == g711.PCMU {
		return 7
	}
	return 6
}

func header(pt uint8, frames uint32) []byte {
	h := make([]byte, headerLen)
	copy(h[0:], "RIFF")
	binary.LittleEndian.PutUint32(h[offRIFFSize:], headerLen-8+2*frames)
	copy(h[8:], "WAVE")
	copy(h[12:], "fmt ")
	binary.LittleEndian.PutUint32(h[16:], 18)
	binary.LittleEndian.PutUint16(h[20:], formatTag(pt))
	binary.LittleEndian.PutUint16(h[22:], 2)     // channels
	binary.LittleEndian.PutUint32(h[24:], 8000)  // sample rate
	binary.LittleEndian.PutUint32(h[28:], 16000) // byte rate
	binary.LittleEndian.PutUint16(h[32:], 2)     // block align
	binary.LittleEndian.PutUint16(h[34:], 8)     // bits per sample
	binary.LittleEndian.PutUint16(h[36:], 0)     // cbSize
	copy(h[38:], "fact")
	binary.LittleEndian.PutUint32(h[42:], 4)
	binary.LittleEndian.PutUint32(h[offFact:], frames)
	copy(h[50:], "data")
	binary.LittleEndian.PutUint32(h[offDataSize:], 2*frames)
	return h
}

// writeSizes rewrites the three size fields for frames of audio.
func writeSizes(f io.WriterAt, frames uint32) error {
	var b [4]byte
	for _, f2 := range []struct {
		off int64
		v   uint32
	}{{offRIFFSize, headerLen - 8 + 2*frames}, {offFact, frames}, {offDataSize, 2 * frames}} {
		binary.LittleEndian.PutUint32(b[:], f2.v)
		if _, err := f.WriteAt(b[:], f2.off); err != nil {
			return err
		}
	}
	return nil
}

// Info is what a recording's header says.
type Info struct {
	PT     uint8 // g711.PCMA or g711.PCMU
	Frames uint32
}

// ReadInfo checks that path is a recording written by this package.
func ReadInfo(path string) (Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return Info{}, err
	}
	defer f.Close()
	h := make([]byte, headerLen)
	if _, err := io.ReadFull(f, h); err != nil {
		return Info{}, fmt.Errorf("read %s: %w", path, err)
	}
	info, err := parseHeader(h)
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", path, err)
	}
	return info, nil
}

// parseHeader reads the header this package writes (the only layout it
// accepts: a recording is never another program's WAV).
func parseHeader(h []byte) (Info, error) {
	if len(h) < headerLen {
		return Info{}, errors.New("truncated header")
	}
	if string(h[0:4]) != "RIFF" || string(h[8:12]) != "WAVE" || string(h[12:16]) != "fmt " ||
		string(h[38:42]) != "fact" || string(h[50:54]) != "data" {
		return Info{}, errors.New("not a callgate recording")
	}
	if ch, bits := binary.LittleEndian.Uint16(h[22:]), binary.LittleEndian.Uint16(h[34:]); ch != 2 || bits != 8 {
		return Info{}, fmt.Errorf("%d channels of %d bits is not a callgate recording", ch, bits)
	}
	tag := binary.LittleEndian.Uint16(h[20:])
	pt := g711.PCMA
	switch tag {
	case 6:
	case 7:
		pt = g711.PCMU
	default:
		return Info{}, fmt.Errorf("format %d is not G.711", tag)
	}
	return Info{PT: pt, Frames: binary.LittleEndian.Uint32(h[offDataSize:]) / 2}, nil
}

// maxData is the most audio a WAV's 32-bit sizes can describe, in whole
// frames.
const maxData = (1<<32 - 1 - (headerLen - 8)) &^ 1

// Repair makes the header of a recording left by a crash or a full disk
// match the audio actually in the file (the header may claim more or less
// than is there; a half frame at the end is cut off) and returns the number
// of frames it holds.
func Repair(path string) (uint32, error) {
	if _, err := ReadInfo(path); err != nil {
		return 0, err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	data := min(size-headerLen, maxData) &^ 1
	if headerLen+data != size {
		if err := f.Truncate(headerLen + data); err != nil {
			return 0, fmt.Errorf("repair %s: %w", path, err)
		}
	}
	frames := uint32(data / 2)
	if err := writeSizes(f, frames); err != nil {
		return 0, fmt.Errorf("repair %s: %w", path, err)
	}
	return frames, f.Sync()
}

// Channels reads a recording's audio as two decoded channels in [-1, 1].
func Channels(path string) (left, right []float64, err error) {
	info, err := ReadInfo(path)
	if err != nil {
		return nil, nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	b = b[headerLen:]
	if n := int(info.Frames) * 2; n < len(b) {
		b = b[:n]
	}
	for i := 0; i+1 < len(b); i += 2 {
		left = append(left, float64(g711.Decode(info.PT, b[i]))/32768)
		right = append(right, float64(g711.Decode(info.PT, b[i+1]))/32768)
	}
	return left, right, nil
}

// PCM reads a recording's audio as interleaved 16-bit samples (left,
// right) at 8 kHz, as far as the file holds whole frames: a header a crash
// left claiming more, or nothing, reads as the audio actually there.
func PCM(path string) ([]int16, error) {
	info, err := ReadInfo(path)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b = b[headerLen:]
	if n := int(info.Frames) * 2; n > 0 && n < len(b) {
		b = b[:n]
	}
	b = b[:len(b)&^1]
	out := make([]int16, len(b))
	for i, v := range b {
		out[i] = g711.Decode(info.PT, v)
	}
	return out, nil
}

// WriteWAV writes interleaved 16-bit samples (left, right) at 8 kHz as a
// recording in the recorder's own format, G.711 payload type pt: for
// fixtures and imports that must read back like a recorded call.
func WriteWAV(path string, pt uint8, pcm []int16) error {
	frames := len(pcm) / 2
	b := header(pt, uint32(frames))
	for _, s := range pcm[:2*frames] {
		b = append(b, g711.Encode(pt, s))
	}
	if err := os.WriteFile(path, b, 0o640); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
