package record

import "syscall"

// Space tells whether the recordings' disk has room for more audio. How
// much must stay free is the caller's policy; the recorder only asks, at
// every Start and about once a second while recording, so that statfs
// costs nothing per packet.
type Space interface {
	// Low reports whether free space is below what must stay free.
	Low() bool
}

// FreeBytes is the space available to unprivileged users on dir's filesystem.
func FreeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}
