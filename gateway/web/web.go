// Package web serves the console: a single page of plain HTML, CSS and
// JavaScript embedded in the binary (nothing is fetched from the internet),
// speaking Russian by default and English on request. It talks to
// callgate only through the JSON API and the live event stream, logged in
// with a session cookie.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var static embed.FS

// security headers: the page runs only its own code and is never framed.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// etags names each embedded file by its content. Embedded files have no
// modification time, so without an ETag a browser could not revalidate
// and would fetch and compile every script again on each page load (the
// browser phone's SIP stack alone is a quarter of a megabyte); with one it
// gets 304 and reuses its compiled code.
func etags(files fs.FS) map[string]string {
	tags := map[string]string{}
	_ = fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(files, path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		tags["/"+path] = `"` + hex.EncodeToString(sum[:12]) + `"`
		return nil
	})
	return tags
}

// Routes are the console's routes for the API server's mux.
func Routes() map[string]http.Handler {
	sub, _ := fs.Sub(static, "static")
	tags := etags(sub)
	files := http.FileServerFS(sub)
	// no-cache: always revalidated, so a new callgate's console is never
	// mixed with the old one's cached scripts.
	index := secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("ETag", tags["/index.html"])
		http.ServeFileFS(w, r, sub, "index.html")
	}))
	assets := secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		if tag, ok := tags[r.URL.Path]; ok {
			w.Header().Set("ETag", tag)
		}
		files.ServeHTTP(w, r)
	}))
	return map[string]http.Handler{
		"GET /{$}":     index,
		"GET /assets/": assets,
		// The logo RetailCRM shows for callgate's integration module.
		"GET /logo.svg": assets,
	}
}
