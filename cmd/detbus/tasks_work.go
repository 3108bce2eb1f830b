package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/detbus/detbus/tasks"
	"github.com/detbus/detbus/transport"
)

// runTasksWork runs a task worker until interrupted. Its handler runs
// --exec, or else the built-in handler, which follows instructions in
// the payload (for tests, demos and benchmarks):
//
//	{"sleep":"50ms"}        work for that long (stops early if the lease is lost)
//	{"fail":"text"}         fail every attempt with that error
//	{"fail_attempts":2}     fail attempts 1 and 2, then succeed
//
// Anything else completes at once. With --record ESK, every execution
// appends {"phase":"start",...} before the work and {"phase":"finish",...}
// after it to that ESK, with the queue, task, attempt, worker and error:
// a record of executions that can be checked against the queue's leases.
func runTasksWork(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newTaskFlags("work", stderr)
	host, _ := os.Hostname()
	id := f.fs.String("id", fmt.Sprintf("%s-%d", host, os.Getpid()), "worker ID, unique among the queue's workers")
	concurrency := f.fs.Int("concurrency", 1, "handlers running at once")
	lease := f.fs.Duration("lease", 0, "lease to claim tasks for (default: the queue's)")
	heartbeat := f.fs.Duration("heartbeat", 0, "heartbeat interval (default: a third of the lease)")
	margin := f.fs.Duration("lease-margin", 0, "stop a handler this long before its lease ends (default: a tenth of the lease)")
	shutdown := f.fs.Duration("shutdown-timeout", tasks.DefaultShutdownTimeout, "on interrupt, how long running handlers may finish")
	command := f.fs.String("exec", "", "run this shell command per task: payload on stdin, DETBUS_TASK_* in the environment; a non-zero exit fails the attempt")
	record := f.fs.String("record", "", "append a start and a finish event per execution to this ESK")
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return helpOK(err)
	}
	if *record != "" {
		if err := transport.ValidateESK(*record); err != nil {
			return usagef("--record: %v", err)
		}
	}
	logw := &lockedWriter{w: stderr}
	logger := slog.New(slog.NewTextHandler(logw, nil))
	c, closeAll, err := f.client(ctx)
	if err != nil {
		return err
	}
	defer closeAll()
	h := &workHandler{log: c.Log(), record: *record, command: *command, stderr: logw}
	w, err := tasks.NewWorker(c, pos[0], h.handle, tasks.WorkerOptions{
		ID: *id, Concurrency: *concurrency, Lease: *lease, HeartbeatEvery: *heartbeat, LeaseMargin: *margin,
		ShutdownTimeout: *shutdown, Logger: logger,
	})
	if err != nil {
		return usagef("%v", err)
	}
	logger.Info("task worker started", "queue", pos[0], "worker", w.ID(), "concurrency", *concurrency)
	err = w.Run(ctx)
	st := w.Stats()
	fmt.Fprintf(stdout, "worker %s on %s: %d claims, %d won, %d lost, %d completed, %d failed, %d leases lost, %d dead-lettered, %d write errors\n",
		w.ID(), pos[0], st.Claims, st.Won, st.Lost, st.Completed, st.Failed, st.LeaseLost, st.Dead, st.Errors)
	return err
}

// workHandler is the handler of `detbus tasks work`.
type workHandler struct {
	log     *transport.Log
	record  string
	command string
	stderr  io.Writer
}

// execRecord is one line of the --record ESK.
type execRecord struct {
	Phase   string `json:"phase"` // "start" or "finish"
	Queue   string `json:"queue"`
	Task    string `json:"task"`
	Attempt int    `json:"attempt"`
	Worker  string `json:"worker"`
	Error   string `json:"error,omitempty"`
}

func (h *workHandler) handle(ctx context.Context, t tasks.Task) (err error) {
	if h.record != "" {
		if err := h.write(ctx, execRecord{Phase: "start", Queue: t.Queue, Task: t.ID, Attempt: t.Attempt, Worker: t.Worker}); err != nil {
			return err
		}
		defer func() {
			rec := execRecord{Phase: "finish", Queue: t.Queue, Task: t.ID, Attempt: t.Attempt, Worker: t.Worker}
			if err != nil {
				rec.Error = err.Error()
			}
			if werr := h.write(ctx, rec); werr != nil && err == nil {
				err = werr
			}
		}()
	}
	if h.command != "" {
		return h.exec(ctx, t)
	}
	return builtin(ctx, t)
}

func (h *workHandler) write(ctx context.Context, rec execRecord) error {
	data, _ := json.Marshal(rec)
	_, err := h.log.Write(context.WithoutCancel(ctx), h.record, data, transport.WithHLC())
	if err != nil {
		return fmt.Errorf("recording the %s: %w", rec.Phase, err)
	}
	return nil
}

// builtin follows the payload's instructions.
func builtin(ctx context.Context, t tasks.Task) error {
	var p struct {
		Sleep        string `json:"sleep"`
		Fail         string `json:"fail"`
		FailAttempts int    `json:"fail_attempts"`
	}
	if len(t.Payload) == 0 || t.Payload[0] != '{' {
		return nil
	}
	if err := json.Unmarshal(t.Payload, &p); err != nil {
		return fmt.Errorf("payload: %v", err)
	}
	if p.Sleep != "" {
		d, err := time.ParseDuration(p.Sleep)
		if err != nil {
			return fmt.Errorf("payload: sleep %q is not a duration", p.Sleep)
		}
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	switch {
	case p.Fail != "":
		return errors.New(p.Fail)
	case t.Attempt <= p.FailAttempts:
		return fmt.Errorf("failing attempt %d of %d", t.Attempt, p.FailAttempts)
	}
	return nil
}

// exec runs the command with the payload on stdin; on a non-zero exit
// the error carries the last line of its stderr.
func (h *workHandler) exec(ctx context.Context, t tasks.Task) error {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", h.command)
	cmd.Stdin = bytes.NewReader(t.Payload)
	cmd.Env = append(os.Environ(), "DETBUS_TASK_QUEUE="+t.Queue, "DETBUS_TASK_ID="+t.ID,
		"DETBUS_TASK_ATTEMPT="+strconv.Itoa(t.Attempt), "DETBUS_WORKER="+t.Worker)
	var tail bytes.Buffer
	stdout, stderr := &lineWriter{w: h.stderr}, &lineWriter{w: h.stderr}
	cmd.Stdout = stdout
	cmd.Stderr = io.MultiWriter(stderr, &tail)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	stdout.Close()
	stderr.Close()
	if err != nil {
		lines := strings.Split(strings.TrimSpace(tail.String()), "\n")
		if last := strings.TrimSpace(lines[len(lines)-1]); last != "" {
			return fmt.Errorf("%v: %s", err, clip(last, 500))
		}
		return err
	}
	return nil
}

// lineWriter passes what a command prints on to w in whole lines, so
// that the output of commands running at once does not mix mid-line, and
// Close ends what is left with a newline. A line longer than
// maxLineBuffer is passed on in pieces.
type lineWriter struct {
	w   io.Writer
	buf []byte
}

const maxLineBuffer = 64 << 10

func (l *lineWriter) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	n := bytes.LastIndexByte(l.buf, '\n') + 1
	if len(l.buf) > maxLineBuffer {
		n = len(l.buf)
	}
	if n > 0 {
		_, err := l.w.Write(l.buf[:n])
		l.buf = l.buf[:copy(l.buf, l.buf[n:])]
		if err != nil {
			return len(p), err
		}
	}
	return len(p), nil
}

// Close writes what is left, ending it with a newline.
func (l *lineWriter) Close() error {
	if len(l.buf) == 0 {
		return nil
	}
	_, err := l.w.Write(append(l.buf, '\n'))
	l.buf = nil
	return err
}

// lockedWriter serialises writes of concurrent handlers.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
