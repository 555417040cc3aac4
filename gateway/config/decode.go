package config

import (
	"bytes"
	"encoding"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// decode fills cfg from the document. go-toml stops at the first value of
// the wrong type and reports unknown keys only when nothing else is wrong,
// so the document is first read into plain maps and checked key by key
// against the Config struct: every unknown key and every value of the wrong
// TOML type becomes a problem and is removed. The rest, well-typed and known
// by construction, is decoded into cfg, so validation still sees every key
// that was written correctly and reports its problems in the same run.
//
// An error means the document could not be decoded this way (go-toml
// refused it as a whole, e.g. a key defined twice); the caller then decodes
// it directly, and reports what that says, or else the problems returned,
// found before the error.
func decode(file string, idx *lineIndex, data []byte, cfg *Config) ([]Problem, error) {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	var clean []byte
	var err error
	s := &schemaCheck{file: file, idx: idx}
	s.table(reflect.TypeOf(*cfg), doc, "", "")
	if len(s.problems) == 0 {
		// Nothing was removed: the document is decoded as written.
		clean = data
	} else if clean, err = toml.Marshal(doc); err != nil {
		return s.problems, fmt.Errorf("re-encode checked config: %w", err)
	}
	dec := toml.NewDecoder(bytes.NewReader(clean))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		return s.problems, fmt.Errorf("decode checked config: %w", err)
	}
	return s.problems, nil
}

type schemaCheck struct {
	file     string
	idx      *lineIndex
	problems []Problem
}

// typeHint is the hint for a value of the wrong type.
const typeHint = "strings need quotes, numbers and true/false do not, lists use [ ]"

var (
	durationType        = reflect.TypeOf(Duration(0))
	textUnmarshalerType = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
)

func (s *schemaCheck) add(path, key, msg, hint string) {
	s.problems = append(s.problems, Problem{File: s.file, Line: s.idx.line(path), Msg: msg, Hint: hint, key: key})
}

// table checks the keys of one TOML table against the struct type t and
// deletes those it reports. path carries array indexes
// ("employee[1].dial"), name does not ("employee.dial"), as the file
// writes it.
func (s *schemaCheck) table(t reflect.Type, m map[string]any, path, name string) {
	fields := tomlFields(t)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p, n := join(path, k), join(name, k)
		ft, ok := fields[k]
		if !ok {
			what := "key"
			if _, isTable := m[k].(map[string]any); isTable {
				what = "table"
			}
			s.add(p, p, fmt.Sprintf("unknown %s %q", what, n), "see configs/callgate.toml for every key; check the spelling and the [section] it is in")
			delete(m, k)
			continue
		}
		if !s.value(ft, m[k], p, n) {
			delete(m, k)
		}
	}
}

// fieldsOf caches tomlFields: a file of 1,000 employees has 1,000 tables
// of the same type.
var fieldsOf sync.Map // reflect.Type -> map[string]reflect.Type

// tomlFields maps the TOML keys of struct type t to their Go types.
func tomlFields(t reflect.Type) map[string]reflect.Type {
	if f, ok := fieldsOf.Load(t); ok {
		return f.(map[string]reflect.Type)
	}
	fields := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		fields[tag] = f.Type
	}
	fieldsOf.Store(t, fields)
	return fields
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// value checks one value against the Go type it decodes into; false means
// it was reported and must be dropped.
func (s *schemaCheck) value(t reflect.Type, v any, path, name string) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == durationType {
		return s.duration(v, path)
	}
	if reflect.PointerTo(t).Implements(textUnmarshalerType) {
		// The typed values of values.go: their text is checked by
		// validation with the key's own hint (a plain number is a Size).
		switch v.(type) {
		case string, int64, float64:
			return true
		}
		return s.mismatch(v, tomlWant(t, name), path)
	}
	switch t.Kind() {
	case reflect.String:
		if _, ok := v.(string); ok {
			return true
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if i, ok := v.(int64); ok {
			if reflect.New(t).Elem().OverflowInt(i) {
				s.add(path, path, fmt.Sprintf("%s: %d is too large", path, i), "")
				return false
			}
			return true
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if i, ok := v.(int64); ok {
			if i < 0 || reflect.New(t).Elem().OverflowUint(uint64(i)) {
				s.add(path, path, fmt.Sprintf("%s: %d is out of range", path, i), "a whole number, 0 or more")
				return false
			}
			return true
		}
	case reflect.Float32, reflect.Float64:
		switch v.(type) {
		case float64, int64:
			return true
		}
	case reflect.Bool:
		if _, ok := v.(bool); ok {
			return true
		}
	case reflect.Slice:
		list, ok := v.([]any)
		if !ok {
			break
		}
		for i, el := range list {
			if !s.value(t.Elem(), el, path+"["+strconv.Itoa(i)+"]", name) {
				return false
			}
		}
		return true
	case reflect.Struct:
		if m, ok := v.(map[string]any); ok {
			s.table(t, m, path, name)
			return true
		}
	default:
		return true // no such field in Config; go-toml decides
	}
	return s.mismatch(v, tomlWant(t, name), path)
}

func (s *schemaCheck) mismatch(v any, want, path string) bool {
	hint := typeHint
	key := lastKey(strings.TrimRight(path, "]0123456789["))
	switch x := v.(type) {
	case string:
		if (want == "an integer" || want == "a number") && isNumber(x) {
			hint = "remove the quotes: " + key + " = " + x
		}
	case int64, float64, bool:
		if want == "a string" && !strings.HasSuffix(path, "]") {
			hint = fmt.Sprintf("put the value in quotes: %s = \"%v\"", key, x)
		}
	}
	s.add(path, path, fmt.Sprintf("%s: wrong type: got a TOML %s, want %s", path, tomlKind(v), want), hint)
	return false
}

// duration checks a Duration: a quoted Go duration with a unit.
func (s *schemaCheck) duration(v any, path string) bool {
	var num string
	switch d := v.(type) {
	case string:
		_, err := parseDuration(d)
		if err == nil {
			return true
		}
		s.add(path, path, path+": "+err.Error(), durationHint(d))
		return false
	case int64:
		num = strconv.FormatInt(d, 10)
	case float64:
		num = strconv.FormatFloat(d, 'f', -1, 64)
	default:
		return s.mismatch(v, tomlWant(durationType, ""), path)
	}
	s.add(path, path, fmt.Sprintf("%s: %s is not a duration: a TOML %s has no unit", path, num, tomlKind(v)), durationHint(num))
	return false
}

// parseDuration reads a Go duration string; a bare number is refused with
// its own message, since that is the usual mistake.
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	switch {
	case err == nil:
		return d, nil
	case isNumber(s):
		return 0, fmt.Errorf("%q is not a duration: the number has no unit", s)
	}
	return 0, fmt.Errorf("%q is not a duration", s)
}

// durationHint is the hint for a duration written as s.
func durationHint(s string) string {
	if isNumber(s) {
		return fmt.Sprintf("use %q", s+"s")
	}
	return `durations are quoted strings with a unit: "300ms", "30s", "5m", "8760h"`
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return err == nil
}

// tomlKind names the TOML type of a value decoded into plain Go values.
func tomlKind(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case time.Time, toml.LocalDateTime:
		return "date-time"
	case toml.LocalDate:
		return "date"
	case toml.LocalTime:
		return "time"
	case []any:
		return "array"
	case map[string]any:
		return "table"
	}
	return fmt.Sprintf("value (%T)", v)
}

// tomlWant names what a key of Go type t, written name in the file, is
// written as in TOML.
func tomlWant(t reflect.Type, name string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		return `a duration such as "30s"`
	case reflect.PointerTo(t).Implements(textUnmarshalerType):
		return "a string"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Struct && !reflect.PointerTo(t.Elem()).Implements(textUnmarshalerType) {
			return "[[" + name + "]] tables"
		}
		return "a list of " + plural(tomlWant(t.Elem(), name))
	case reflect.Struct:
		return "a table"
	}
	return t.Kind().String()
}

func plural(want string) string {
	switch want {
	case "a string":
		return "strings"
	case "an integer":
		return "integers"
	case "a number":
		return "numbers"
	case "true or false":
		return "true/false values"
	}
	return "values"
}
