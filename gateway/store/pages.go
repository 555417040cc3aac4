package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
)

// This file reads bbolt's on-disk format (version 2) directly, with every
// offset checked against the data, so that a damaged file is described
// instead of crashing the process: bbolt itself trusts its pages and panics
// (or faults on its memory map) when they are garbage. bbolt writes its
// structures in the machine's byte order; callgate runs on little-endian
// machines (amd64, arm64), so little-endian is read here.

const (
	pageHeaderSize = 16
	metaSize       = 64 // up to and including the checksum
	elemSize       = 16 // branch and leaf elements are both 16 bytes
	bucketHdrSize  = 16 // root page id + sequence

	flagBranch   = 0x01
	flagLeaf     = 0x02
	flagMeta     = 0x04
	flagFreelist = 0x10
	flagBucket   = 0x01 // leaf element holding a nested bucket

	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	noFreelist     = ^uint64(0)
	maxDepth       = 64 // deeper trees are loops or garbage
	maxProblemText = 50 // problems kept as text; all are counted
)

var le = binary.LittleEndian

// meta is one of bbolt's two meta pages.
type meta struct {
	page     int
	pageSize int
	root     uint64 // root bucket's page
	freelist uint64
	pgid     uint64 // high-water mark: pages [0, pgid) are in use or free
	txid     uint64
}

// parseMeta reads a meta page that starts at b; it fails on a wrong magic,
// version or checksum, as bbolt does.
func parseMeta(b []byte, page int) (meta, error) {
	if len(b) < pageHeaderSize+metaSize {
		return meta{}, fmt.Errorf("meta page %d: cut short (the file is truncated)", page)
	}
	m := b[pageHeaderSize : pageHeaderSize+metaSize]
	switch {
	case le.Uint32(m[0:]) != boltMagic:
		return meta{}, fmt.Errorf("meta page %d: not a bbolt meta page (bad magic)", page)
	case le.Uint32(m[4:]) != boltVersion:
		return meta{}, fmt.Errorf("meta page %d: unknown format version %d", page, le.Uint32(m[4:]))
	}
	h := fnv.New64a()
	h.Write(m[:56])
	if h.Sum64() != le.Uint64(m[56:]) {
		return meta{}, fmt.Errorf("meta page %d: checksum mismatch", page)
	}
	return meta{page: page, pageSize: int(le.Uint32(m[8:])), root: le.Uint64(m[16:]), freelist: le.Uint64(m[32:]),
		pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, nil
}

// page states while walking.
const (
	pgUnseen = iota
	pgTree
	pgFree
	pgMeta
)

// walker visits every page reachable from a meta page and records what is
// wrong. It never panics on any input.
type walker struct {
	data  []byte
	m     meta
	ps    int
	hw    uint64 // pages that exist for the walk: min(meta pgid, pages in the file)
	state []byte

	problems     []string
	problemCount int
	warnings     []string
	damagedPages int

	buckets map[string]*BucketStat
	schema  int
	// onBucket and onKey, when set, receive what is readable (repair).
	onBucket func(path [][]byte, seq uint64)
	onKey    func(path [][]byte, k, v []byte)
}

func (w *walker) problem(format string, args ...any) {
	w.problemCount++
	if len(w.problems) < maxProblemText {
		w.problems = append(w.problems, fmt.Sprintf(format, args...))
	}
}

// newWalker picks the meta page bbolt would use (the valid one with the
// higher transaction id). It fails when neither is valid.
func newWalker(data []byte) (*walker, error) {
	w := &walker{data: data, buckets: map[string]*BucketStat{}}
	var metas []meta
	var errs []string
	m0, err0 := parseMeta(data, 0)
	if err0 == nil {
		metas = append(metas, m0)
	} else {
		errs = append(errs, err0.Error())
	}
	// Page 1 sits one page in; the page size comes from page 0 or, when
	// that is damaged, from whichever common size finds a valid page 1.
	sizes := []int{4096, 1024, 2048, 8192, 16384, 32768, 65536}
	if err0 == nil {
		sizes = []int{m0.pageSize}
	}
	err1 := fmt.Errorf("meta page 1: missing (the file is truncated)")
	for _, ps := range sizes {
		if ps <= 0 || ps >= len(data) {
			continue
		}
		m1, err := parseMeta(data[ps:], 1)
		if err == nil && m1.pageSize == ps {
			metas = append(metas, m1)
			err1 = nil
			break
		}
		if err == nil {
			err = fmt.Errorf("meta page 1: page size %d differs from page 0's", m1.pageSize)
		}
		err1 = err
	}
	if err1 != nil {
		errs = append(errs, err1.Error())
	}
	if len(metas) == 0 {
		return nil, fmt.Errorf("no valid meta page: %s", strings.Join(errs, "; "))
	}
	sort.Slice(metas, func(i, j int) bool { return metas[i].txid > metas[j].txid })
	w.m = metas[0]
	for _, e := range errs {
		w.warnings = append(w.warnings, e+fmt.Sprintf(" (bbolt uses meta page %d, transaction %d)", w.m.page, w.m.txid))
	}
	w.ps = w.m.pageSize
	if w.ps < 512 || w.ps > 1<<20 || w.ps&(w.ps-1) != 0 {
		return nil, fmt.Errorf("meta page %d: implausible page size %d", w.m.page, w.ps)
	}
	inFile := uint64(len(data) / w.ps)
	w.hw = w.m.pgid
	if w.hw > inFile {
		w.problem("the file holds %d pages but the database uses %d: it was truncated (%d bytes missing)",
			inFile, w.m.pgid, w.m.pgid*uint64(w.ps)-uint64(len(data)))
		w.hw = inFile
	}
	if w.hw < 2 {
		return nil, fmt.Errorf("the file is truncated to %d bytes, shorter than its two meta pages", len(data))
	}
	w.state = make([]byte, w.hw)
	w.state[0], w.state[1] = pgMeta, pgMeta
	return w, nil
}

// page returns the bytes of page id and its overflow pages, or why not.
func (w *walker) page(id uint64) ([]byte, error) {
	if id < 2 {
		return nil, fmt.Errorf("page %d: points at a meta page", id)
	}
	if id >= w.m.pgid {
		return nil, fmt.Errorf("page %d: beyond the database's last page %d", id, w.m.pgid-1)
	}
	if id >= w.hw {
		return nil, fmt.Errorf("page %d: beyond the end of the file (truncated)", id)
	}
	off := id * uint64(w.ps)
	hdr := w.data[off : off+pageHeaderSize]
	if got := le.Uint64(hdr); got != id {
		return nil, fmt.Errorf("page %d: header says page %d (overwritten)", id, got)
	}
	overflow := uint64(le.Uint32(hdr[12:]))
	if id+overflow >= w.hw {
		return nil, fmt.Errorf("page %d: its %d overflow pages run past the end", id, overflow)
	}
	return w.data[off : off+(overflow+1)*uint64(w.ps)], nil
}

// mark claims the pages of p for state, reporting pages claimed twice.
func (w *walker) mark(id uint64, p []byte, state byte) bool {
	n := uint64(len(p) / w.ps)
	for i := id; i < id+n; i++ {
		if w.state[i] != pgUnseen {
			w.problem("page %d: used twice (a loop or a damaged reference)", i)
			return false
		}
	}
	for i := id; i < id+n; i++ {
		w.state[i] = state
	}
	return true
}

func pathName(path [][]byte) string {
	if len(path) == 0 {
		return "(root)"
	}
	parts := make([]string, len(path))
	for i, p := range path {
		parts[i] = fmt.Sprintf("%q", p)
		if isPrintable(p) {
			parts[i] = string(p)
		}
	}
	return strings.Join(parts, "/")
}

func isPrintable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e || c == '/' {
			return false
		}
	}
	return len(b) > 0
}

func (w *walker) stat(path [][]byte) *BucketStat {
	name := pathName(path)
	s := w.buckets[name]
	if s == nil {
		s = &BucketStat{Name: name}
		w.buckets[name] = s
	}
	return s
}

// walk visits the whole tree from the chosen meta page's root bucket.
func (w *walker) walk() {
	w.walkPage(nil, w.m.root, 0)
	if w.m.freelist != noFreelist {
		w.walkFreelist()
	}
	unreachable := 0
	for _, s := range w.state {
		if s == pgUnseen {
			unreachable++
		}
	}
	if unreachable > 0 && w.m.freelist != noFreelist && w.problemCount == 0 {
		w.warnings = append(w.warnings, fmt.Sprintf("%d pages neither in use nor free (space leaked, no data lost)", unreachable))
	}
}

func (w *walker) walkFreelist() {
	id := w.m.freelist
	p, err := w.page(id)
	if err != nil {
		w.problem("freelist: %v", err)
		w.damagedPages++
		return
	}
	if flags := le.Uint16(p[8:]); flags != flagFreelist {
		w.problem("freelist: page %d is not a freelist page (flags %#x)", id, flags)
		w.damagedPages++
		return
	}
	if !w.mark(id, p, pgMeta) {
		return
	}
	idx, count := uint64(0), uint64(le.Uint16(p[10:]))
	if count == 0xFFFF {
		idx, count = 1, le.Uint64(p[pageHeaderSize:])
	}
	if count > uint64(len(p)-pageHeaderSize)/8-idx {
		w.problem("freelist: page %d claims %d free pages, more than it can hold", id, count)
		w.damagedPages++
		return
	}
	for i := uint64(0); i < count; i++ {
		f := le.Uint64(p[pageHeaderSize+(idx+i)*8:])
		switch {
		case f < 2 || f >= w.m.pgid:
			w.problem("freelist: free page %d is out of range", f)
		case f >= w.hw:
			// free pages past a truncation hold nothing
		case w.state[f] == pgFree:
			w.problem("freelist: page %d is listed twice", f)
		case w.state[f] != pgUnseen:
			w.problem("freelist: page %d is listed free but is in use", f)
		default:
			w.state[f] = pgFree
		}
	}
}

func (w *walker) walkPage(path [][]byte, id uint64, depth int) {
	if depth > maxDepth {
		w.problem("bucket %s: tree deeper than %d pages (a loop)", pathName(path), maxDepth)
		return
	}
	p, err := w.page(id)
	if err != nil {
		w.problem("bucket %s: %v", pathName(path), err)
		w.damagedPages++
		return
	}
	if !w.mark(id, p, pgTree) {
		return
	}
	w.walkNode(path, id, p, depth)
}

// walkNode reads a branch or leaf page p (a real page, or an inline
// bucket's page when id is 0).
func (w *walker) walkNode(path [][]byte, id uint64, p []byte, depth int) {
	flags, count, why := checkNode(p)
	if why != "" {
		if id == 0 {
			w.problem("bucket %s: inline page: %s", pathName(path), why)
		} else {
			w.problem("bucket %s: page %d: %s", pathName(path), id, why)
		}
		w.damagedPages++
		return
	}
	var st *BucketStat
	if flags == flagLeaf && len(path) > 0 {
		st = w.stat(path)
	}
	for i := 0; i < count; i++ {
		e := pageHeaderSize + i*elemSize
		if flags == flagBranch {
			w.walkPage(path, le.Uint64(p[e+8:]), depth+1)
			continue
		}
		eflags := le.Uint32(p[e:])
		pos, ksize, vsize := uint64(le.Uint32(p[e+4:])), uint64(le.Uint32(p[e+8:])), uint64(le.Uint32(p[e+12:]))
		k := p[uint64(e)+pos : uint64(e)+pos+ksize]
		v := p[uint64(e)+pos+ksize : uint64(e)+pos+ksize+vsize]
		if eflags&flagBucket != 0 {
			w.walkBucket(append(path[:len(path):len(path)], k), v, depth+1)
			continue
		}
		if len(path) == 0 {
			w.problem("page %d: a plain key at the top level, where only buckets belong", id)
			continue
		}
		st.Keys++
		if len(path) == 1 && bytes.Equal(path[0], BucketMeta) && bytes.Equal(k, keySchema) && len(v) == 8 {
			w.schema = int(binary.BigEndian.Uint64(v))
		}
		if w.onKey != nil {
			w.onKey(path, k, v)
		}
	}
}

// walkBucket reads a nested bucket from its header v (root page, sequence
// and, for an inline bucket, its page).
func (w *walker) walkBucket(path [][]byte, v []byte, depth int) {
	if depth > maxDepth {
		w.problem("bucket %s: nested deeper than %d levels", pathName(path), maxDepth)
		return
	}
	root, seq := le.Uint64(v), le.Uint64(v[8:])
	w.stat(path)
	if w.onBucket != nil {
		w.onBucket(path, seq)
	}
	if root != 0 {
		w.walkPage(path, root, depth)
		return
	}
	inline := v[bucketHdrSize:]
	w.walkNode(path, 0, inline, depth)
}

// checkNode checks every element of a branch or leaf page before any is
// used, so a damaged page is lost whole rather than half copied. It says
// what is wrong, or "".
func checkNode(p []byte) (flags uint16, count int, why string) {
	flags, count = le.Uint16(p[8:]), int(le.Uint16(p[10:]))
	if flags != flagBranch && flags != flagLeaf {
		return flags, count, fmt.Sprintf("flags %#x where a branch or leaf page belongs (overwritten)", flags)
	}
	if flags == flagBranch && count == 0 {
		return flags, count, "empty branch page (overwritten)"
	}
	if pageHeaderSize+count*elemSize > len(p) {
		return flags, count, fmt.Sprintf("%d elements do not fit in the page (overwritten)", count)
	}
	var prev []byte
	for i := 0; i < count; i++ {
		e := pageHeaderSize + i*elemSize
		var pos, ksize, vsize uint64
		if flags == flagBranch {
			pos, ksize = uint64(le.Uint32(p[e:])), uint64(le.Uint32(p[e+4:]))
		} else {
			pos, ksize, vsize = uint64(le.Uint32(p[e+4:])), uint64(le.Uint32(p[e+8:])), uint64(le.Uint32(p[e+12:]))
		}
		if uint64(e)+pos+ksize+vsize > uint64(len(p)) {
			return flags, count, fmt.Sprintf("element %d points outside the page (overwritten)", i)
		}
		k := p[uint64(e)+pos : uint64(e)+pos+ksize]
		if i > 0 && bytes.Compare(prev, k) >= 0 {
			return flags, count, "keys out of order (overwritten)"
		}
		prev = k
		if flags == flagLeaf && le.Uint32(p[e:])&flagBucket != 0 {
			v := p[uint64(e)+pos+ksize : uint64(e)+pos+ksize+vsize]
			if len(v) < bucketHdrSize || (le.Uint64(v) == 0 && len(v) < bucketHdrSize+pageHeaderSize) {
				return flags, count, fmt.Sprintf("element %d: nested bucket header cut short (overwritten)", i)
			}
		}
	}
	return flags, count, ""
}

// orphans passes fn the plain keys of every intact leaf page that the tree
// no longer reaches and the freelist does not list: pages cut off from
// their bucket by a damaged or missing page above them. Without a readable
// freelist, old copies of pages freed by earlier transactions come too.
func (w *walker) orphans(fn func(k, v []byte)) (pages int) {
	for id := uint64(2); id < w.hw; id++ {
		if w.state[id] != pgUnseen {
			continue
		}
		off := id * uint64(w.ps)
		hdr := w.data[off : off+pageHeaderSize]
		overflow := uint64(le.Uint32(hdr[12:]))
		if le.Uint64(hdr) != id || le.Uint16(hdr[8:]) != flagLeaf || id+overflow >= w.hw {
			continue
		}
		p := w.data[off : off+(overflow+1)*uint64(w.ps)]
		if _, count, why := checkNode(p); why == "" {
			pages++
			for i := 0; i < count; i++ {
				e := uint64(pageHeaderSize + i*elemSize)
				pos, ksize, vsize := uint64(le.Uint32(p[e+4:])), uint64(le.Uint32(p[e+8:])), uint64(le.Uint32(p[e+12:]))
				if le.Uint32(p[e:])&flagBucket == 0 {
					fn(p[e+pos:e+pos+ksize], p[e+pos+ksize:e+pos+ksize+vsize])
				}
			}
			id += overflow
		}
	}
	return pages
}
