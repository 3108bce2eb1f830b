package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/detbus/detbus/transport"
)

const defaultNATS = "nats://127.0.0.1:4222"

// newFlags makes a flag set whose errors are returned, not printed and
// exited on.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("detbus "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// clientFlags are the flags every client command shares.
type clientFlags struct {
	url     string
	stream  string
	prefix  string
	timeout time.Duration
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	def := os.Getenv("DETBUS_NATS")
	if def == "" {
		def = defaultNATS
	}
	fs.StringVar(&c.url, "nats", def, "NATS server URL(s), comma-separated")
	fs.StringVar(&c.stream, "stream", transport.DefaultStream, "JetStream stream holding the log")
	fs.StringVar(&c.prefix, "prefix", transport.DefaultPrefix, "subject prefix of ESKs")
	fs.DurationVar(&c.timeout, "timeout", transport.DefaultTimeout, "deadline of each call")
}

func (c *clientFlags) open(ctx context.Context) (*transport.Log, error) {
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return transport.Connect(cctx, c.url, transport.Config{Stream: c.stream, Prefix: c.prefix, Timeout: c.timeout, NoProvision: true})
}

// parse parses args, allowing flags after positional arguments, and
// checks the number of positional arguments.
func parse(fs *flag.FlagSet, args []string, minArgs, maxArgs int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%v", err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) < minArgs || len(pos) > maxArgs {
		return nil, usagef("%s takes %s", fs.Name(), argCount(minArgs, maxArgs))
	}
	return pos, nil
}

func argCount(lo, hi int) string {
	switch {
	case lo == hi && lo == 0:
		return "no arguments"
	case lo == hi:
		return fmt.Sprintf("%d argument(s)", lo)
	}
	return fmt.Sprintf("%d to %d arguments", lo, hi)
}

// helpOK turns -h into a clean exit.
func helpOK(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}
