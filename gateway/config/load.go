package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Problem is one thing wrong in a configuration file.
type Problem struct {
	File string
	Line int // 0 when the problem is not tied to a line
	Msg  string
	Hint string
	// Warning marks something allowed but most likely wrong or unsafe
	// (check-config -strict refuses it); the rest are errors.
	Warning bool

	key string // the key path it is about, when one
}

func (p Problem) String() string {
	s := p.File
	if p.Line > 0 {
		s += ":" + strconv.Itoa(p.Line)
	}
	s += ": "
	if p.Warning {
		s += "warning: "
	}
	s += p.Msg
	if p.Hint != "" {
		s += " (hint: " + p.Hint + ")"
	}
	return s
}

// Error lists every problem found in a configuration file, one per line.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Load reads, decodes and validates the file at path, and reads the secrets
// its *_file keys point to. A returned error is an *Error unless the file
// itself could not be read.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates data as if read from the file named name.
func Parse(name string, data []byte) (*Config, error) {
	idx := &lineIndex{data: data}
	cfg := Defaults()
	// A written array replaces the default one wholesale.
	problems, err := decode(name, idx, data, &cfg)
	if err != nil {
		if perr := idx.err(); perr != nil {
			return nil, &Error{Problems: []Problem{problemFromParser(name, data, perr)}}
		}
		// What was found key by key still stands (go-toml would read a
		// duration of 60 as 60ns without a word).
		cfg = Defaults()
		dec := toml.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return nil, &Error{Problems: decodeProblems(name, idx, err)}
		}
	}
	cfg.File = name
	v := &validator{file: name, idx: idx, base: filepath.Dir(name)}
	v.validate(&cfg)
	problems = append(problems, unshadowed(v.problems, problems)...)
	if len(problems) > 0 {
		sort.SliceStable(problems, func(i, j int) bool { return problems[i].Line < problems[j].Line })
		return nil, &Error{Problems: problems}
	}
	cfg.Warnings = v.warnings(&cfg)
	return &cfg, nil
}

// unshadowed drops the validation problems of keys already reported while
// decoding: a value of the wrong type was left out, and validation saw the
// default (or nothing) in its place.
func unshadowed(validation, decoding []Problem) []Problem {
	if len(decoding) == 0 {
		return validation
	}
	reported := map[string]bool{}
	for _, p := range decoding {
		reported[p.key] = true
	}
	var out []Problem
	for _, p := range validation {
		if p.key == "" || !reported[p.key] {
			out = append(out, p)
		}
	}
	return out
}

// lineIndex maps a key path such as "employee[1].extensions[0]" to the line
// where it is written. It is built on the first question: a file without
// problems or warnings (most reloads) never needs it, and building it is a
// parse of its own.
type lineIndex struct {
	data  []byte
	built bool
	lines map[string]int
	perr  error
}

func (ix *lineIndex) build() {
	if !ix.built {
		ix.built = true
		ix.lines, ix.perr = indexLines(ix.data)
	}
}

// err is the TOML parser's error, if the document does not parse.
func (ix *lineIndex) err() error {
	ix.build()
	return ix.perr
}

func (ix *lineIndex) line(path string) int {
	ix.build()
	for path != "" {
		if l, ok := ix.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

func indexLines(data []byte) (map[string]int, error) {
	ix := map[string]int{}
	counts := map[string]int{}
	nl := newlines(data)
	var p unstable.Parser
	p.Reset(data)
	table := ""
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			name := joinKey(e.Key())
			if e.Kind == unstable.ArrayTable {
				n := counts[name]
				counts[name] = n + 1
				name = arrayName(name, counts, n)
			} else {
				name = arrayName(name, counts, -1)
			}
			table = name
			kit := e.Key()
			kit.Next()
			ix[table] = lineOf(&p, nl, kit.Node())
		case unstable.KeyValue:
			key := joinKey(e.Key())
			if table != "" {
				key = table + "." + key
			}
			kit := e.Key()
			kit.Next()
			ix[key] = lineOf(&p, nl, kit.Node())
			if v := e.Value(); v.Kind == unstable.Array {
				it := v.Children()
				for i := 0; it.Next(); i++ {
					ix[key+"["+strconv.Itoa(i)+"]"] = lineOf(&p, nl, it.Node())
				}
			}
		}
	}
	return ix, p.Error()
}

// arrayName rewrites a dotted table name so that each array-of-tables
// component carries its current index ("upstream.account" -> "upstream.account[1]").
func arrayName(name string, counts map[string]int, self int) string {
	parts := strings.Split(name, ".")
	out := ""
	for i, part := range parts {
		if out != "" {
			out += "."
		}
		out += part
		plain := strings.Join(parts[:i+1], ".")
		if i == len(parts)-1 && self >= 0 {
			out += "[" + strconv.Itoa(self) + "]"
		} else if n, ok := counts[plain]; ok && n > 0 {
			out += "[" + strconv.Itoa(n-1) + "]"
		}
	}
	return out
}

func joinKey(it unstable.Iterator) string {
	var parts []string
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return strings.Join(parts, ".")
}

func lineOf(p *unstable.Parser, nl []int, n *unstable.Node) int {
	if n == nil {
		return 0
	}
	if n.Raw.Length > 0 || n.Raw.Offset > 0 {
		return lineAt(nl, int(n.Raw.Offset))
	}
	if len(n.Data) > 0 {
		defer func() { _ = recover() }() // Data may be a copy, not a slice of the input
		return lineAt(nl, int(p.Range(n.Data).Offset))
	}
	return 0
}

// newlines are the offsets of a document's line ends. Finding a line
// among them takes a binary search; Parser.Shape counts from the start
// of the document every time, which made indexing a file of 1,000
// employees take 0.4 s.
func newlines(data []byte) []int {
	var nl []int
	for i, c := range data {
		if c == '\n' {
			nl = append(nl, i)
		}
	}
	return nl
}

// lineAt is the line (from 1) of the byte at offset.
func lineAt(nl []int, offset int) int { return sort.SearchInts(nl, offset) + 1 }

func problemFromParser(name string, data []byte, err error) Problem {
	var pe *unstable.ParserError
	if errors.As(err, &pe) && len(pe.Highlight) > 0 {
		var p unstable.Parser
		p.Reset(data)
		line := 0
		func() {
			defer func() { _ = recover() }()
			line = p.Shape(p.Range(pe.Highlight)).Start.Line
		}()
		return Problem{File: name, Line: line, Msg: "TOML syntax: " + pe.Message, Hint: "check quotes, brackets and '=' on this line"}
	}
	return Problem{File: name, Msg: "TOML syntax: " + err.Error()}
}

var typeMismatch = regexp.MustCompile(`cannot decode TOML (\w+) into (?:struct field )?\S*? ?of type ([\w.\[\]*]+)`)

// decodeProblems reports what go-toml says about a document decode could
// not check key by key (such as a key defined twice).
func decodeProblems(name string, ix *lineIndex, err error) []Problem {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		var out []Problem
		for _, e := range strict.Errors {
			line, _ := e.Position()
			key := strings.Join(e.Key(), ".")
			out = append(out, Problem{File: name, Line: line, Msg: fmt.Sprintf("unknown key %q", key),
				Hint: "see configs/callgate.toml for every key; check the spelling and the [section] it is in"})
		}
		return out
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		key := strings.Join(de.Key(), ".")
		msg := humanType(strings.TrimPrefix(de.Error(), "toml: "))
		if key != "" {
			msg = key + ": " + msg
		}
		hint := typeHint
		if strings.Contains(msg, "already defined") || strings.Contains(msg, "already exists") {
			hint = "write each key, and each [table], once; remove one of them"
		}
		return []Problem{{File: name, Line: line, Msg: msg, Hint: hint}}
	}
	return []Problem{{File: name, Msg: humanType(strings.TrimPrefix(err.Error(), "toml: ")), Hint: typeHint}}
}

// textTypes are the configuration's types written as TOML strings.
var textTypes = map[string]bool{"config.ListenAddr": true, "config.PortRange": true, "config.Size": true, "config.IP": true, "config.Network": true}

// humanType rewrites go-toml's type errors, which name Go types, in TOML's
// terms.
func humanType(msg string) string {
	m := typeMismatch.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	want := strings.TrimLeft(m[2], "*")
	switch {
	case strings.HasPrefix(want, "[]") || want == "config.Networks":
		want = "a list"
	case strings.HasPrefix(want, "int") || strings.HasPrefix(want, "uint"):
		want = "an integer"
	case strings.HasPrefix(want, "float"):
		want = "a number"
	case want == "bool":
		want = "true or false"
	case want == "config.Duration":
		want = `a duration such as "30s"`
	case textTypes[want]:
		want = "a string"
	case strings.HasPrefix(want, "config."):
		want = "a table"
	default:
		want = "a string"
	}
	return fmt.Sprintf("wrong type: got a TOML %s, want %s", m[1], want)
}
