// Package configs ships the reference configuration and the demo's
// configuration inside the binary.
package configs

import _ "embed"

// Reference is configs/callgate.toml: every key, documented.
//
//go:embed callgate.toml
var Reference []byte

// Demo is configs/demo.toml, the embedded default `callgate demo` runs on.
//
//go:embed demo.toml
var Demo []byte
