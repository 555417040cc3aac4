//go:build race

package demo

// raceEnabled builds the demo under test with the race detector too.
const raceEnabled = true
