package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"
)

// cmdHash reads a password and prints its bcrypt hash for console logins
// in the configuration (password_hash). Only the hash reaches stdout.
func cmdHash(stdin io.Reader, stdout, stderr io.Writer) int {
	pw, err := readPassword(stdin, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "callgate hash-password: %v\n", err)
		return exitUsage
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), 12)
	if err != nil {
		fmt.Fprintf(stderr, "callgate hash-password: %v\n", err)
		return exitRuntime
	}
	fmt.Fprintln(stdout, string(h))
	return exitOK
}

const minPassword = 8

// readPassword asks on a terminal twice, without echo, so a typing mistake
// cannot become the password; from a pipe or file it reads one line.
func readPassword(stdin io.Reader, prompt io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return askTwice(int(f.Fd()), prompt)
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", errors.New("no password on standard input")
	}
	pw := strings.TrimRight(line, "\r\n")
	if len(pw) < minPassword {
		return "", fmt.Errorf("use at least %d characters", minPassword)
	}
	return pw, nil
}

func askTwice(fd int, prompt io.Writer) (string, error) {
	// Interrupted while echo is off, the shell would be left not showing
	// what is typed: put the terminal back first.
	state, err := term.GetState(fd)
	if err != nil {
		return "", fmt.Errorf("terminal: %w", err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	defer func() { signal.Stop(sig); close(done) }()
	go func() {
		select {
		case <-sig:
			_ = term.Restore(fd, state)
			fmt.Fprintln(prompt)
			os.Exit(130)
		case <-done:
		}
	}()
	ask := func(what string) ([]byte, error) {
		fmt.Fprint(prompt, what)
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(prompt)
		if err != nil {
			return nil, fmt.Errorf("read password: %w", err)
		}
		return b, nil
	}
	first, err := ask("password: ")
	if err != nil {
		return "", err
	}
	if len(first) < minPassword {
		return "", fmt.Errorf("use at least %d characters", minPassword)
	}
	second, err := ask("again: ")
	if err != nil {
		return "", err
	}
	if !bytes.Equal(first, second) {
		return "", errors.New("the two passwords differ; nothing was printed, run it again")
	}
	return string(first), nil
}
