//go:build race

package e2e

// raceEnabled builds the daemon under test with the race detector too, so
// `go test -race` also checks the running binary.
const raceEnabled = true
