//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
)

// lockServe takes the lock that lets one serve process at a time serve
// the SQLite database at path (an operator's review: a second serve on a
// served file started without a word, with its own destinations and
// thresholds): <path>.serve.lock beside it, flock'ed for the process's
// life and naming its pid. Another serve holding it is a usage error
// naming that pid. Nothing is locked for PostgreSQL (several gateways
// share one database), nor where the lock cannot be taken at all (no such
// directory: the open says so; a file system without flock).
func lockServe(path string) (release func(), err error) {
	if isPostgres(path) {
		return func() {}, nil
	}
	name := path + ".serve.lock"
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return func() {}, nil
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(name)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := strings.TrimSpace(string(holder))
			if who == "" {
				who = "another process"
			}
			return nil, &exitError{code: exitUsage, msg: fmt.Sprintf("serve: the SQLite database %s is being served "+
				"already (%s holds %s): a SQLite file is served by one gateway process (docs/deployment.md); stop that "+
				"one first, or run several gateways on PostgreSQL", describeDB(path), who, name)}
		}
		return func() {}, nil
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt(fmt.Appendf(nil, "pid %d\n", os.Getpid()), 0)
	return func() { f.Close() }, nil
}
