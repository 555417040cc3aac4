package config

import "time"

// Control configures the local control socket: `callgate backup` asks the
// running daemon for a consistent copy of its database through it, even
// with the HTTP API off.
type Control struct {
	// Socket is the unix socket's path (empty: no control socket). The
	// default lives in the unit's RuntimeDirectory.
	Socket string `toml:"socket"`
}

// Backup configures scheduled copies of the database.
type Backup struct {
	// Dir receives the copies (empty: no scheduled backups). The service
	// must be able to write there (under ProtectSystem=strict: inside
	// StateDirectory, or a path named in ReadWritePaths=).
	Dir string `toml:"dir"`
	// Every is the time between two copies.
	Every Duration `toml:"every"`
	// Keep is how many copies stay; older ones are deleted.
	Keep int `toml:"keep"`
	// Target is where the copies go: "dir" (backup.dir) or "archive"
	// (the [archive] bucket, under backups/; backup.dir, or data_dir's
	// backup-staging when empty, holds each copy until it is uploaded).
	Target string `toml:"target"`
}

// The backup targets.
const (
	BackupToDir     = "dir"
	BackupToArchive = "archive"
)

// DefaultControlSocket is control.socket when the file does not set it.
const DefaultControlSocket = "/run/callgate/control.sock"

// backupDefaults are the [control] and [backup] defaults.
func backupDefaults() (Control, Backup) {
	return Control{Socket: DefaultControlSocket}, Backup{Every: Duration(24 * time.Hour), Keep: 7, Target: BackupToDir}
}
