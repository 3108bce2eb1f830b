package main

import (
	"context"
	"flag"
	"io"

	"github.com/detbus/detbus/internal/cli"
	"github.com/detbus/detbus/transport"
)

// The flag handling the commands share lives in internal/cli, with the
// worker entry point of transform/worker; these are its names here.

const defaultNATS = cli.DefaultNATS

func newFlags(name string, stderr io.Writer) *flag.FlagSet { return cli.NewFlags(name, stderr) }

// clientFlags are the flags every client command shares.
type clientFlags struct{ cli.ClientFlags }

func (c *clientFlags) register(fs *flag.FlagSet) { c.Register(fs) }

func (c *clientFlags) open(ctx context.Context) (*transport.Log, error) { return c.Open(ctx) }

func parse(fs *flag.FlagSet, args []string, minArgs, maxArgs int) ([]string, error) {
	return cli.Parse(fs, args, minArgs, maxArgs)
}

func helpOK(err error) error { return cli.HelpOK(err) }

// usageError marks a mistake in how the command was called (exit status 2).
type usageError = cli.UsageError

func usagef(format string, args ...any) error { return cli.Usagef(format, args...) }

func retry(ctx context.Context, what string, f func(context.Context) error) error {
	return cli.Retry(ctx, what, f)
}
