// Package demo holds the end-to-end test of `callgate demo` left running:
// the built binary runs the simulated office for minutes, past the
// phones' and the trunk's first registration intervals, and its output and
// API show calls of every kind still going through. It is its own package
// so that `go test ./...` runs it beside the main e2e package rather than
// after it; it has no code outside its tests.
package demo
