package main

import (
	"fmt"
	"os"
	"testing"

	"callgate/internal/testenv"
)

// The command-line tests run the real binary, built once for the package.
// The tests that run the daemon and drive it with phones, a VPBX, CRMs and
// a browser are in e2e/ at the module root.
var binPath string

func TestMain(m *testing.M) {
	bin, remove, err := testenv.BuildCallgate(raceEnabled)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = bin
	code := m.Run()
	remove()
	os.Exit(code)
}

func needTool(t *testing.T, name string) string { return testenv.NeedTool(t, name) }
