package main

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
	creds   credFlags
}

// credFlags are how a client proves who it is and trusts the server.
type credFlags struct {
	user, password string
	nkeySeed       string
	tlsCA          string
	tlsCert        string
	tlsKey         string
}

func (c *credFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.user, "user", os.Getenv("DETBUS_NATS_USER"), "NATS user name (or $DETBUS_NATS_USER; a user in the --nats URL works too)")
	fs.StringVar(&c.password, "password", os.Getenv("DETBUS_NATS_PASSWORD"), "NATS password (or $DETBUS_NATS_PASSWORD)")
	fs.StringVar(&c.nkeySeed, "nkey", os.Getenv("DETBUS_NATS_NKEY"), "file holding the user's NKey seed (or $DETBUS_NATS_NKEY)")
	fs.StringVar(&c.tlsCA, "tls-ca", os.Getenv("DETBUS_NATS_CA"), "CA certificate (PEM) that signed the server's certificate (or $DETBUS_NATS_CA)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "client certificate (PEM), when the server verifies clients")
	fs.StringVar(&c.tlsKey, "tls-key", "", "the client certificate's key (PEM)")
}

// options turns the flags into NATS connection options.
func (c *credFlags) options() ([]nats.Option, error) {
	var opts []nats.Option
	if c.user != "" || c.password != "" {
		if c.user == "" || c.password == "" {
			return nil, usagef("--user and --password go together")
		}
		opts = append(opts, transport.UserOptions(c.user, c.password)...)
	}
	if c.nkeySeed != "" {
		if c.user != "" {
			return nil, usagef("--nkey and --user exclude each other")
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
		return nil, usagef("--tls-cert and --tls-key go together")
	}
	if c.tlsCert != "" {
		opts = append(opts, nats.ClientCert(c.tlsCert, c.tlsKey))
	}
	return opts, nil
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
	c.creds.register(fs)
}

func (c *clientFlags) open(ctx context.Context) (*transport.Log, error) {
	opts, err := c.creds.options()
	if err != nil {
		return nil, err
	}
	// A user named in the URL gets its inboxes too.
	if u, err := url.Parse(strings.Split(c.url, ",")[0]); err == nil && u.User != nil && c.creds.user == "" && c.creds.nkeySeed == "" {
		opts = append(opts, nats.CustomInboxPrefix(transport.InboxPrefix(u.User.Username())))
	}
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return transport.Connect(cctx, c.url, transport.Config{Stream: c.stream, Prefix: c.prefix, Timeout: c.timeout, NoProvision: true}, opts...)
}

// parse parses args, allowing flags after positional arguments, and
// checks the number of positional arguments. For -h it prints the flags;
// a mistake is only returned, as a usage error, for main to print once.
func parse(fs *flag.FlagSet, args []string, minArgs, maxArgs int) ([]string, error) {
	var pos []string
	for {
		if err := parseQuiet(fs, args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printDefaults(fs)
				return nil, err
			}
			return nil, usagef("%v (%s -h lists its flags)", err, fs.Name())
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

// helpOK turns -h into a clean exit.
func helpOK(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}
