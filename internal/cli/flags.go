// Package cli holds what the detbus commands share: flag sets whose
// mistakes are usage errors, the flags that connect a client to NATS and
// the log (URL, stream, prefix, deadline, credentials), and retrying
// while a node is starting. The detbus command and transform/worker use
// it, so that a worker built into a user's own binary takes the same
// flags as detbus worker.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/detbus/detbus/transport"
)

// DefaultNATS is the NATS URL a client connects to without --nats or
// $DETBUS_NATS.
const DefaultNATS = "nats://127.0.0.1:4222"

// NewFlags makes the flag set of the detbus command name.
func NewFlags(name string, stderr io.Writer) *flag.FlagSet {
	return NewFlagSet("detbus "+name, stderr)
}

// NewFlagSet makes a flag set named name whose errors are returned, not
// printed and exited on.
func NewFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// ClientFlags are the flags every client command shares.
type ClientFlags struct {
	URL     string
	Stream  string
	Prefix  string
	Site    string
	Timeout time.Duration
	Creds   CredFlags
}

// CredFlags are how a client proves who it is and trusts the server.
type CredFlags struct {
	user, password string
	nkeySeed       string
	tlsCA          string
	tlsCert        string
	tlsKey         string
}

// Register adds the flags to fs.
func (c *CredFlags) Register(fs *flag.FlagSet) {
	fs.StringVar(&c.user, "user", os.Getenv("DETBUS_NATS_USER"), "NATS user name (or $DETBUS_NATS_USER; a user in the --nats URL works too)")
	fs.StringVar(&c.password, "password", os.Getenv("DETBUS_NATS_PASSWORD"), "NATS password (or $DETBUS_NATS_PASSWORD)")
	fs.StringVar(&c.nkeySeed, "nkey", os.Getenv("DETBUS_NATS_NKEY"), "file holding the user's NKey seed (or $DETBUS_NATS_NKEY)")
	fs.StringVar(&c.tlsCA, "tls-ca", os.Getenv("DETBUS_NATS_CA"), "CA certificate (PEM) that signed the server's certificate (or $DETBUS_NATS_CA)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "client certificate (PEM), when the server verifies clients")
	fs.StringVar(&c.tlsKey, "tls-key", "", "the client certificate's key (PEM)")
}

// Options turns the flags into NATS connection options.
func (c *CredFlags) Options() ([]nats.Option, error) {
	var opts []nats.Option
	if c.user != "" || c.password != "" {
		if c.user == "" || c.password == "" {
			return nil, Usagef("--user and --password go together")
		}
		opts = append(opts, transport.UserOptions(c.user, c.password)...)
	}
	if c.nkeySeed != "" {
		if c.user != "" {
			return nil, Usagef("--nkey and --user exclude each other")
		}
		o, err := transport.NKeyOptions(c.nkeySeed)
		if err != nil {
			return nil, fmt.Errorf("--nkey %s: %w", c.nkeySeed, err)
		}
		opts = append(opts, o...)
	}
	if c.tlsCA != "" {
		opts = append(opts, nats.RootCAs(c.tlsCA))
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return nil, Usagef("--tls-cert and --tls-key go together")
	}
	if c.tlsCert != "" {
		opts = append(opts, nats.ClientCert(c.tlsCert, c.tlsKey))
	}
	return opts, nil
}

// Register adds the flags to fs.
func (c *ClientFlags) Register(fs *flag.FlagSet) {
	def := os.Getenv("DETBUS_NATS")
	if def == "" {
		def = DefaultNATS
	}
	fs.StringVar(&c.URL, "nats", def, "NATS server URL(s), comma-separated")
	fs.StringVar(&c.Stream, "stream", transport.DefaultStream, "JetStream stream holding the log")
	fs.StringVar(&c.Prefix, "prefix", transport.DefaultPrefix, "subject prefix of ESKs")
	fs.StringVar(&c.Site, "site", os.Getenv("DETBUS_SITE"), "the site whose own log to use, when the node runs as a site (or $DETBUS_SITE)")
	fs.DurationVar(&c.Timeout, "timeout", transport.DefaultTimeout, "deadline of each call")
	c.Creds.Register(fs)
}

// Open connects to the log as the flags say, without provisioning it.
func (c *ClientFlags) Open(ctx context.Context) (*transport.Log, error) {
	opts, err := c.Creds.Options()
	if err != nil {
		return nil, err
	}
	// A user named in the URL gets its inboxes too.
	if u, err := url.Parse(strings.Split(c.URL, ",")[0]); err == nil && u.User != nil && c.Creds.user == "" && c.Creds.nkeySeed == "" {
		opts = append(opts, nats.CustomInboxPrefix(transport.InboxPrefix(u.User.Username())))
	}
	cctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	l, err := transport.Connect(cctx, c.URL, transport.Config{Stream: c.Stream, Prefix: c.Prefix, Site: c.Site, Timeout: c.Timeout, NoProvision: true}, opts...)
	if err != nil && c.Site == "" && strings.Contains(err.Error(), "stream not found") {
		return nil, fmt.Errorf("%w (a node that runs as a site keeps its log as %s_<site>: name the site with --site or $DETBUS_SITE)", err, c.Stream)
	}
	return l, err
}

// Parse parses args, allowing flags after positional arguments, and
// checks the number of positional arguments. For -h it prints the flags;
// a mistake is only returned, as a usage error, for main to print once.
func Parse(fs *flag.FlagSet, args []string, minArgs, maxArgs int) ([]string, error) {
	var pos []string
	for {
		if err := parseQuiet(fs, args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printDefaults(fs)
				return nil, err
			}
			return nil, Usagef("%v (%s -h lists its flags)", err, fs.Name())
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) < minArgs || len(pos) > maxArgs {
		return nil, Usagef("%s takes %s", fs.Name(), argCount(minArgs, maxArgs))
	}
	return pos, nil
}

// parseQuiet parses args with fs printing nothing: the flag package
// prints each error, with every flag, before returning it.
func parseQuiet(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	fs.SetOutput(io.Discard)
	defer fs.SetOutput(out)
	return fs.Parse(args)
}

// printDefaults prints fs's usage as the flag package does for -h.
func printDefaults(fs *flag.FlagSet) {
	if fs.Usage != nil {
		fs.Usage()
		return
	}
	fmt.Fprintf(fs.Output(), "Usage of %s:\n", fs.Name())
	fs.PrintDefaults()
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

// HelpOK turns -h into a clean exit.
func HelpOK(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

// UsageError marks a mistake in how a command was called (exit status 2).
type UsageError struct{ msg string }

func (e *UsageError) Error() string { return e.msg }

// Usagef returns a [*UsageError].
func Usagef(format string, args ...any) error {
	return &UsageError{msg: fmt.Sprintf(format, args...)}
}

// Retry calls f, each time with a 10s deadline, until it succeeds, ctx
// ends or two minutes pass: a node or a cluster that is starting, or busy,
// answers later. A refusal (transport.ErrForbidden) is not retried.
func Retry(ctx context.Context, what string, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		actx, acancel := context.WithTimeout(ctx, 10*time.Second)
		err := f(actx)
		acancel()
		if err == nil || errors.Is(err, transport.ErrForbidden) {
			return err // done, or refused credentials: no retry mends those
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, err)
		case <-time.After(wait):
		}
	}
}
