// Package layout holds the checks of the repository's structure that
// docs/architecture.md promises: the lower floors (sip/, media/, crm/)
// never import gateway/, the gateway root stays wiring, the map names every
// package, and files stay small and named for what they hold. It has no
// code of its own; its tests read the module with the go command.
package layout
