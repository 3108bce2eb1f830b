// Command detbus runs a detbus node and talks to one.
//
//	detbus serve                      start a node: embedded NATS + JetStream
//	detbus cluster                    start three nodes on loopback as one cluster
//	detbus write <esk> <json>         append an event (--index N: conditionally)
//	detbus tail <esk> [--from N]      print an ESK's events (--follow to wait for more)
//	detbus status                     stream state and every ESK with its count
//	detbus kv <command> ...           the key/value store: tables, keys, get, set, add, remove, incr, create
//	detbus worker <transform>         run an instance of a deterministic transform
//	detbus bench transform            measure DETs run as worker processes
//	detbus tasks <command>            task queues: create, add, list, show, retry, cancel, dead, work
//	detbus verify [--stream S]        check the log's hash chain against its checkpoints
//	detbus trace <esk> <index>        walk back from an output to the source's event, checking hashes
//
// Client commands take --nats URL (default $DETBUS_NATS or
// nats://127.0.0.1:4222). Usage errors exit with status 2, other failures
// with status 1.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "detbus:", err)
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(stderr, "run 'detbus help' for usage")
		return 2
	}
	return 1
}

type command struct {
	name, args, help string
	run              func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "[flags]", "start a node: embedded NATS with JetStream, the EVENTS stream and the request service", runServe},
		{"cluster", "[--nodes 3] [--port 4222]", "start a development cluster: serve processes on loopback, the log on every node", runCluster},
		{"sites", "[--names a,b,c] [--port 4222]", "start development sites: serve --site processes on loopback, each writing its own log and copying the others'", runSites},
		{"write", "<esk> <json> [--index N]", "append an event; with --index, only if N is the ESK's next index", runWrite},
		{"tail", "<esk|pattern> [--from N] [--follow]", "print events in log order", runTail},
		{"status", "[--esk pattern]", "show the stream and every ESK with its count", runStatus},
		{"kv", "<tables|keys|get|set|add|remove|incr|create> ...", "read and write the key/value store ('detbus kv help')", runKV},
		{"worker", "<transform> [--instance name]", "run an instance of a deterministic transform (" + transformNames() + ")", runWorker},
		{"bench", "transform [--instances 1,2,3]", "measure DET latency, throughput and failover with worker processes", runBench},
		{"tasks", "<command> [arguments]", "task queues on the log: create, add, list, show, retry, cancel, dead, work", runTasks},
		{"verify", "[--stream S] [--copy SITE] [--against S]", "recompute the log's hash chain and check its checkpoints, from the last one confirmed", runVerify},
		{"trace", "<esk> <index>", "walk back from an output through the DETs that made it to the source's event, checking every hash", runTrace},
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return dispatch(ctx, "", commands(), usage, args, stdout, stderr)
}

// dispatch runs the command of cmds that args[0] names. With no
// arguments it prints usage to stderr and fails; for help it prints usage
// to stdout. prefix starts its usage errors.
func dispatch(ctx context.Context, prefix string, cmds []command, usage func(io.Writer), args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return usagef("%sno command given", prefix)
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "--help" {
		usage(stdout)
		return nil
	}
	for _, c := range cmds {
		if c.name == name {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	return usagef("%sunknown command %q", prefix, name)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: detbus <command> [arguments]")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-7s %-38s %s\n", c.name, c.args, c.help)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Client commands take --nats URL (default $DETBUS_NATS or nats://127.0.0.1:4222).")
	fmt.Fprintln(w, "Run 'detbus <command> -h' for a command's flags.")
}
