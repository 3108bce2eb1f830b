package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// detbusBinary builds this command once per test run.
func detbusBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "detbus-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "detbus")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// proc is a detbus command that a test runs in the background: the
// binary as a subprocess (startProc) or run in-process (goRun).
type proc struct {
	name string
	cmd  *exec.Cmd            // the subprocess; nil in-process
	out  *testnats.SyncBuffer // its stdout and stderr
	done chan struct{}        // closed once it has returned (been waited for)
	err  error                // what it returned, once done is closed
}

func newProc(name string) *proc {
	return &proc{name: name, out: &testnats.SyncBuffer{}, done: make(chan struct{})}
}

// startProc runs the detbus binary with args. At cleanup the process is
// killed if it still runs, and its output logged if the test failed.
func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := newProc(name)
	p.cmd = exec.Command(detbusBinary(t), args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		p.logIfFailed(t)
	})
	return p
}

// goRun runs the command line args in-process. At cleanup it is
// cancelled, the test fails if it returned an error, and its output is
// logged if the test failed.
func goRun(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := newProc(name)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		p.err = run(ctx, args, p.out, p.out)
		close(p.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
		if p.err != nil {
			t.Errorf("%s: %v", p.name, p.err)
		}
		p.logIfFailed(t)
	})
	return p
}

func (p *proc) logIfFailed(t *testing.T) {
	if t.Failed() {
		t.Logf("%s output:\n%s", p.name, p.out)
	}
}

// waitOutput waits until the output contains want, and fails the test
// at once if the command returns first.
func (p *proc) waitOutput(t *testing.T, timeout time.Duration, want string) {
	t.Helper()
	testnats.WaitFor(t, timeout, fmt.Sprintf("%s to print %q", p.name, want), func() error {
		t.Helper()
		select {
		case <-p.done:
			t.Fatalf("%s exited: %v\n%s", p.name, p.err, p.out)
		default:
		}
		if !strings.Contains(p.out.String(), want) {
			return errors.New("not yet")
		}
		return nil
	})
}

// wait waits up to timeout for the command to return, and returns its
// error.
func (p *proc) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("%s still running %v later", p.name, timeout)
		return nil
	}
}

// kill SIGKILLs the process and waits until it has exited.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = p.wait(t, 30*time.Second)
}
