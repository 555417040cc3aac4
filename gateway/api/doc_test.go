package api

import (
	"bufio"
	"encoding/json"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// docExample is one ```http block of docs/api.md: a request, the status it
// gets and (optionally) JSON the response must contain.
type docExample struct {
	line    int
	method  string
	path    string
	headers []string
	reqBody string
	status  int
	body    string
}

func readDocExamples(t *testing.T, path string) []docExample {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []docExample
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		if sc.Text() != "```http" {
			continue
		}
		ex := docExample{line: n}
		var lines []string
		for sc.Scan() {
			n++
			if sc.Text() == "```" {
				break
			}
			lines = append(lines, sc.Text())
		}
		if len(lines) == 0 {
			t.Fatalf("docs/api.md:%d: empty example", ex.line)
		}
		ex.method, ex.path, _ = strings.Cut(lines[0], " ")
		i := 1
		for ; i < len(lines) && lines[i] != ""; i++ {
			k, v, _ := strings.Cut(lines[i], ": ")
			ex.headers = append(ex.headers, k, v)
		}
		// An optional request body, then a blank line before the status.
		if i+1 < len(lines) && !strings.HasPrefix(lines[i+1], "HTTP/1.1 ") {
			ex.reqBody = lines[i+1]
			i += 2
		}
		if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "HTTP/1.1 ") {
			t.Fatalf("docs/api.md:%d: no HTTP/1.1 status line", ex.line)
		}
		ex.status, err = strconv.Atoi(strings.Fields(lines[i+1])[1])
		if err != nil {
			t.Fatalf("docs/api.md:%d: %v", ex.line, err)
		}
		ex.body = strings.Join(lines[i+2:], "\n")
		out = append(out, ex)
	}
	return out
}

// within reports whether every field the documentation shows is in got
// with the same value; a documented string ending in "…" is a prefix.
func within(doc, got any) bool {
	switch d := doc.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return false
		}
		for k, v := range d {
			if !within(v, g[k]) {
				return false
			}
		}
		return true
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) < len(d) {
			return false
		}
		for i := range d {
			if !within(d[i], g[i]) {
				return false
			}
		}
		return true
	case string:
		g, ok := got.(string)
		if p, cut := strings.CutSuffix(d, "…"); cut {
			return ok && strings.HasPrefix(g, p)
		}
		return ok && g == d
	}
	return reflect.DeepEqual(doc, got)
}

func TestAPIDocExamples(t *testing.T) {
	f := newFixture(t)
	examples := readDocExamples(t, "../../docs/api.md")
	if len(examples) < 10 {
		t.Fatalf("only %d examples found", len(examples))
	}
	for _, ex := range examples {
		token := ""
		var hdr []string
		for i := 0; i < len(ex.headers); i += 2 {
			if ex.headers[i] == "Authorization" {
				token = strings.TrimPrefix(ex.headers[i+1], "Bearer ")
				continue
			}
			hdr = append(hdr, ex.headers[i], ex.headers[i+1])
		}
		res, body := f.doBody(t, ex.method, ex.path, token, ex.reqBody, hdr...)
		if res.StatusCode != ex.status {
			t.Errorf("docs/api.md:%d: %s %s: status %d, documented %d (%s)", ex.line, ex.method, ex.path, res.StatusCode, ex.status, body)
			continue
		}
		if strings.TrimSpace(ex.body) == "" {
			continue
		}
		var doc, got any
		if err := json.Unmarshal([]byte(ex.body), &doc); err != nil {
			t.Fatalf("docs/api.md:%d: documented body is not JSON: %v", ex.line, err)
		}
		if err := json.Unmarshal(body, &got); err != nil || !within(doc, got) {
			t.Errorf("docs/api.md:%d: %s %s answered %s, documented %s", ex.line, ex.method, ex.path, body, ex.body)
		}
	}
}
