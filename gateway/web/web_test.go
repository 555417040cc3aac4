package web

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func get(t *testing.T, h http.Handler, path, ifNoneMatch string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	if ifNoneMatch != "" {
		r.Header.Set("If-None-Match", ifNoneMatch)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// A browser revalidates the console's files on each load and gets 304
// while they are unchanged, so it keeps its compiled scripts.
func TestAssetsRevalidate(t *testing.T) {
	routes := Routes()
	seen := map[string]string{}
	for _, c := range []struct{ route, path string }{
		{"GET /{$}", "/"},
		{"GET /assets/", "/assets/app.js"},
		{"GET /assets/", "/assets/phone.js"},
		{"GET /assets/", "/assets/app.css"},
	} {
		h := routes[c.route]
		first := get(t, h, c.path, "")
		tag := first.Header().Get("ETag")
		if first.Code != http.StatusOK || len(tag) < 10 || first.Header().Get("Cache-Control") != "no-cache" {
			t.Fatalf("%s: %d, ETag %q, Cache-Control %q", c.path, first.Code, tag, first.Header().Get("Cache-Control"))
		}
		if other, dup := seen[tag]; dup {
			t.Fatalf("%s and %s share the ETag %s", c.path, other, tag)
		}
		seen[tag] = c.path
		if again := get(t, h, c.path, tag); again.Code != http.StatusNotModified || again.Body.Len() != 0 {
			t.Fatalf("%s with its ETag: %d, %d bytes; want 304 and no body", c.path, again.Code, again.Body.Len())
		}
		if stale := get(t, h, c.path, `"0123456789abcdef01234567"`); stale.Code != http.StatusOK || stale.Body.Len() == 0 {
			t.Fatalf("%s with another ETag: %d; want 200 with the file", c.path, stale.Code)
		}
	}
	if w := get(t, routes["GET /assets/"], "/assets/", ""); w.Code != http.StatusNotFound {
		t.Fatalf("/assets/ lists the directory: %d", w.Code)
	}
}
