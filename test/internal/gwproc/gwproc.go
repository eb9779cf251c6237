// Package gwproc builds the ketamine-gateway binary and runs `serve` as a
// real process for the end-to-end tests (test and test/console): its
// standard error is kept as its log, its address is taken from its
// "listening" line, and it is stopped with SIGINT as an operator would.
package gwproc

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Build builds ./cmd/ketamine-gateway of the module whose root is root
// into a new temporary directory; cleanup removes it.
func Build(root string) (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "kg-bin")
	if err != nil {
		return "", nil, err
	}
	bin = filepath.Join(dir, "ketamine-gateway")
	build := exec.Command("go", "build", "-o", bin, "./cmd/ketamine-gateway")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("build: %w", err)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

// Logs is a process's log as it arrives, safe to read while it is written.
type Logs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is the log so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Proc is a started `ketamine-gateway serve`.
type Proc struct {
	Cmd  *exec.Cmd
	Base string // http://host:port, once WaitAddr returned
	Logs *Logs
	addr chan string
}

// Prepare makes the process of bin with args (not started: the caller may
// start several at the same moment with Start); its standard error goes to
// Logs line by line.
func Prepare(bin string, args ...string) (*Proc, error) {
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p := &Proc{Cmd: cmd, Logs: &Logs{}, addr: make(chan string, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			p.Logs.Write(append(append([]byte(nil), line...), '\n'))
			var l struct{ Msg, Addr string }
			if json.Unmarshal(line, &l) == nil && l.Msg == "listening" {
				select {
				case p.addr <- l.Addr:
				default:
				}
			}
		}
	}()
	return p, nil
}

// Start starts a prepared process.
func (p *Proc) Start() error { return p.Cmd.Start() }

// Launch prepares and starts the process of bin with args.
func Launch(bin string, args ...string) (*Proc, error) {
	p, err := Prepare(bin, args...)
	if err != nil {
		return nil, err
	}
	if err := p.Start(); err != nil {
		return nil, err
	}
	return p, nil
}

// WaitAddr waits until the process reports the address it listens on and
// sets Base; after timeout it kills the process.
func (p *Proc) WaitAddr(timeout time.Duration) error {
	select {
	case a := <-p.addr:
		p.Base = "http://" + a
		return nil
	case <-time.After(timeout):
		_ = p.Cmd.Process.Kill()
		return errors.New("the gateway did not report its address")
	}
}

// WaitHealthy polls Base/healthz until it answers 200.
func (p *Proc) WaitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(p.Base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("the gateway never became healthy")
		}
		time.Sleep(10 * time.Millisecond) // polling a starting process, not timing a test
	}
}

// Stop sends SIGINT and waits for the exit (nil if it had exited
// already): an error is an unclean exit.
func (p *Proc) Stop() error {
	if p.Cmd.ProcessState != nil || p.Cmd.Process == nil {
		return nil
	}
	_ = p.Cmd.Process.Signal(syscall.SIGINT)
	return p.Cmd.Wait()
}
