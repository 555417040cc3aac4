// Package web serves the console: a single page of plain HTML, CSS and
// JavaScript embedded in the binary (nothing is fetched from the internet),
// speaking Russian by default and English on request. It talks to
// callgate only through the JSON API and the live event stream, logged in
// with a session cookie.
package web

import (
	"embed"
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

// Routes are the console's routes for the API server's mux.
func Routes() map[string]http.Handler {
	sub, _ := fs.Sub(static, "static")
	files := http.FileServerFS(sub)
	index := secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, sub, "index.html")
	}))
	assets := secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}))
	return map[string]http.Handler{
		"GET /{$}":     index,
		"GET /assets/": assets,
		// The logo RetailCRM shows for callgate's integration module.
		"GET /logo.svg": assets,
	}
}
