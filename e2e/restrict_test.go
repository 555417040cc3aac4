package e2e

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// noNetlinkEnv, set to callgate's binary, makes the test binary a wrapper
// that denies itself AF_NETLINK sockets and execs callgate: what the
// shipped unit's RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 does
// (systemd installs the same kind of seccomp filter, answering
// EAFNOSUPPORT). It happens in init, before the test framework starts.
const noNetlinkEnv = "CALLGATE_E2E_NO_NETLINK"

func init() {
	bin := os.Getenv(noNetlinkEnv)
	if bin == "" {
		return
	}
	if err := denyNetlink(); err != nil {
		fmt.Fprintln(os.Stderr, "deny netlink:", err)
		os.Exit(3)
	}
	os.Unsetenv(noNetlinkEnv)
	err := syscall.Exec(bin, append([]string{bin}, os.Args[1:]...), os.Environ())
	fmt.Fprintln(os.Stderr, "exec", bin, err)
	os.Exit(3)
}

// denyNetlink installs a seccomp filter on every thread: socket(2) with
// the AF_NETLINK family fails with EAFNOSUPPORT, every other call passes.
func denyNetlink() error {
	const (
		ldW   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeqK  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		retK  = unix.BPF_RET | unix.BPF_K
		nr    = 0  // offsetof(struct seccomp_data, nr)
		arch  = 4  // offsetof(struct seccomp_data, arch)
		arg0  = 16 // offsetof(struct seccomp_data, args[0]), its low word on little-endian
		allow = unix.SECCOMP_RET_ALLOW
		deny  = unix.SECCOMP_RET_ERRNO | uint32(unix.EAFNOSUPPORT)
	)
	filter := []unix.SockFilter{
		{Code: ldW, K: arch},
		{Code: jeqK, Jt: 1, Jf: 0, K: unix.AUDIT_ARCH_X86_64},
		{Code: retK, K: allow}, // another architecture: this test does not apply
		{Code: ldW, K: nr},
		{Code: jeqK, Jt: 0, Jf: 3, K: unix.SYS_SOCKET},
		{Code: ldW, K: arg0},
		{Code: jeqK, Jt: 0, Jf: 1, K: unix.AF_NETLINK},
		{Code: retK, K: deny},
		{Code: retK, K: allow},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog))); errno != 0 {
		return fmt.Errorf("seccomp: %w", errno)
	}
	return nil
}
