package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/detbus/detbus/kv"
	"github.com/detbus/detbus/transport"
)

// kvCommand is a subcommand of `detbus kv` and how many positional
// arguments it takes.
type kvCommand struct {
	name, args, help string
	minArgs, maxArgs int
}

// kvCommands are the subcommands of `detbus kv`.
var kvCommands = []kvCommand{
	{"tables", "", "list the tables with their type, keys, ops and rejections", 0, 0},
	{"keys", "<table> [--after K] [--limit N]", "list a table's keys that hold a value, in order", 1, 1},
	{"get", "<table> <key> [--json]", "print a key's value (--json: with its type and CRDT state)", 2, 2},
	{"rejections", "[table]", "print the ops the fold rejected, with position and reason", 0, 1},
	{"create", "<table> <lww|orset|counter|map|mvreg>", "declare a table", 2, 2},
	{"set", "<table> <key> [field] <json>", "set an lww or mvreg key, or a map key's field", 3, 4},
	{"delete", "<table> <key>", "delete an lww key", 2, 2},
	{"add", "<table> <key> <element>", "add an element to an orset key", 3, 3},
	{"remove", "<table> <key> <element|field>", "remove an orset element or a map field", 3, 3},
	{"incr", "<table> <key> [field] [delta]", "add delta (default 1, may be negative) to a counter or a map field", 2, 4},
}

func kvUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: detbus kv <command> [arguments] [--nats URL]")
	fmt.Fprintln(w)
	for _, c := range kvCommands {
		fmt.Fprintf(w, "  %-10s %-38s %s\n", c.name, c.args, c.help)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Writes print where the op landed once it is applied; reads first catch up with the log.")
}

// negativeNumber matches an argument that is a negative integer, which
// is a delta, not a flag.
var negativeNumber = regexp.MustCompile(`^-[0-9]+$`)

func runKV(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		kvUsage(stderr)
		return usagef("kv: no command given")
	}
	sub, args := args[0], args[1:]
	if sub == "help" || sub == "-h" || sub == "--help" {
		kvUsage(stdout)
		return nil
	}
	i := slices.IndexFunc(kvCommands, func(c kvCommand) bool { return c.name == sub })
	if i < 0 {
		kvUsage(stderr)
		return usagef("kv: unknown command %q", sub)
	}
	fs := newFlags("kv "+sub, stderr)
	var cf clientFlags
	cf.register(fs)
	after := fs.String("after", "", "keys: list the keys after this one")
	limit := fs.Int("limit", 0, "keys: list at most this many keys (0: all)")
	asJSON := fs.Bool("json", false, "print JSON")
	args = negativesPositional(fs, args)
	pos, err := parse(fs, args, kvCommands[i].minArgs, kvCommands[i].maxArgs)
	if err != nil {
		return helpOK(err)
	}
	if *limit < 0 {
		return usagef("kv keys: --limit must not be negative")
	}
	if len(pos) > 0 { // the first argument names a table
		if err := kv.ValidateTable(pos[0]); err != nil {
			return usagef("kv %s: %v", sub, err)
		}
	}
	var typ kv.Type
	if sub == "create" {
		if typ, err = kv.ParseType(pos[1]); err != nil {
			return usagef("kv create: %v", err)
		}
	}

	l, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer l.Close()
	if kvReads[sub] {
		// Ask a running node, which has the store folded already.
		err := kvRead(ctx, kvRemote{kv.NewRemote(l)}, sub, pos, *after, *limit, *asJSON, stdout)
		if !errors.Is(err, transport.ErrNoService) {
			return err
		}
		fmt.Fprintln(stderr, "kv: no node serves the store; folding the log here")
	}
	s, err := kv.Open(ctx, l, kv.Options{SnapshotEvery: -1, SnapshotInterval: -1,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	defer s.Close()
	sctx, cancel := context.WithTimeout(ctx, cf.Timeout)
	defer cancel()
	if err := s.Sync(sctx); err != nil {
		return fmt.Errorf("kv: catching up with the log: %w", err)
	}

	if kvReads[sub] {
		return kvRead(ctx, kvLocal{s}, sub, pos, *after, *limit, *asJSON, stdout)
	}
	if sub == "create" {
		return kvWrote(stdout, pos[0], "")(s.CreateTable(ctx, pos[0], typ))
	}
	op, err := kvOp(s, sub, pos)
	if err != nil {
		return err
	}
	p, err := s.Do(ctx, pos[0], op)
	if errors.Is(err, kv.ErrInvalidOp) || errors.Is(err, kv.ErrTableType) {
		return usagef("kv %s: %v", sub, err)
	}
	return kvWrote(stdout, pos[0], op.Key)(p, err)
}

// negativesPositional marks arguments that are negative integers, such
// as a delta, as positional (the flag package would take them for flags),
// unless they are the value of a flag.
func negativesPositional(fs *flag.FlagSet, args []string) []string {
	var out []string
	for i, a := range args {
		if negativeNumber.MatchString(a) && !(i > 0 && takesValue(fs, args[i-1])) {
			out = append(out, "--")
		}
		out = append(out, a)
	}
	return out
}

// takesValue reports whether arg is a flag of fs that takes its value
// from the next argument.
func takesValue(fs *flag.FlagSet, arg string) bool {
	name := strings.TrimLeft(arg, "-")
	if name == arg || strings.Contains(name, "=") {
		return false
	}
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return !ok || !b.IsBoolFlag()
}

// kvOp builds the op of a write command, reading the table's type to
// tell a map's field from an element, a delta or a value.
func kvOp(s *kv.Store, sub string, pos []string) (kv.Op, error) {
	table, key := pos[0], pos[1]
	info, ok := s.Table(table)
	if !ok {
		return kv.Op{}, fmt.Errorf("%w: %q (declare it with: detbus kv create %s <type>)", kv.ErrNoTable, table, table)
	}
	isMap := info.Type == kv.TypeMap
	op := kv.Op{Key: key}
	switch sub {
	case "set":
		op.Op = kv.OpSet
		rest := pos[2:]
		if isMap {
			if len(rest) != 2 {
				return kv.Op{}, usagef("kv set: %s is a map table: give <table> <key> <field> <json>", table)
			}
			op.Field, rest = rest[0], rest[1:]
		} else if len(rest) != 1 {
			return kv.Op{}, usagef("kv set: %s is %s table: give <table> <key> <json>", table, article(info.Type))
		}
		if !json.Valid([]byte(rest[0])) {
			var v any
			err := json.Unmarshal([]byte(rest[0]), &v)
			return kv.Op{}, usagef("kv set: the value for %s/%s is not valid JSON (%v); quote strings, e.g. '\"text\"'", table, key, err)
		}
		op.Value = json.RawMessage(rest[0])
	case "delete":
		op.Op = kv.OpDelete
	case "add":
		op.Op, op.Element = kv.OpAdd, pos[2]
	case "remove":
		op.Op = kv.OpRemove
		if isMap {
			op.Field = pos[2]
		} else {
			op.Element = pos[2]
		}
	case "incr":
		op.Op = kv.OpIncr
		rest := pos[2:]
		if isMap {
			if len(rest) == 0 {
				return kv.Op{}, usagef("kv incr: %s is a map table: give <table> <key> <field> [delta]", table)
			}
			op.Field, rest = rest[0], rest[1:]
		}
		if len(rest) > 1 {
			return kv.Op{}, usagef("kv incr: too many arguments for %s table", article(info.Type))
		}
		delta := int64(1)
		if len(rest) == 1 {
			d, err := strconv.ParseInt(rest[0], 10, 64)
			if err != nil {
				return kv.Op{}, usagef("kv incr: delta %q is not an integer", rest[0])
			}
			delta = d
		}
		op.Delta = &delta
	}
	if err := kv.CheckOp(info.Type, op); err != nil {
		return kv.Op{}, usagef("kv %s: %s: %v", sub, table, err)
	}
	return op, nil
}

func article(t kv.Type) string {
	if t == kv.TypeCounter || t == kv.TypeMap {
		return "a " + string(t)
	}
	return "an " + string(t)
}

// kvWrote prints where a write landed.
func kvWrote(stdout io.Writer, table, key string) func(transport.Position, error) error {
	return func(p transport.Position, err error) error {
		if err != nil {
			if errors.Is(err, kv.ErrInvalidOp) || errors.Is(err, kv.ErrTableType) {
				return usagef("%v", err)
			}
			return err
		}
		return printJSON(stdout, struct {
			Table string `json:"table"`
			Key   string `json:"key,omitempty"`
			ESK   string `json:"esk"`
			Index uint64 `json:"index"`
			Seq   uint64 `json:"seq"`
		}{table, key, p.ESK, p.Index, p.Seq})
	}
}

// kvReads are the commands that only read.
var kvReads = map[string]bool{"tables": true, "keys": true, "get": true, "rejections": true}

// kvReader is what the read commands need of a store: the node's, asked
// by request, or one folded here.
type kvReader interface {
	Tables(ctx context.Context) (kv.TablesReply, error)
	Keys(ctx context.Context, table, after string, limit int) ([]string, bool, error)
	Get(ctx context.Context, table, key string) (kv.Value, error)
	Rejections(ctx context.Context, table string) ([]kv.Rejection, error)
}

type kvRemote struct{ *kv.Remote }

type kvLocal struct{ s *kv.Store }

func (l kvLocal) Tables(context.Context) (kv.TablesReply, error) {
	return kv.TablesReply{Tables: l.s.Tables(), UndeclaredRejected: l.s.UndeclaredRejected()}, nil
}

func (l kvLocal) Keys(_ context.Context, table, after string, limit int) ([]string, bool, error) {
	return l.s.Keys(table, after, limit)
}

func (l kvLocal) Get(_ context.Context, table, key string) (kv.Value, error) {
	return l.s.Get(table, key)
}

func (l kvLocal) Rejections(_ context.Context, table string) ([]kv.Rejection, error) {
	return l.s.Rejections(table), nil
}

// kvRead runs a read command.
func kvRead(ctx context.Context, r kvReader, sub string, pos []string, after string, limit int, asJSON bool, stdout io.Writer) error {
	switch sub {
	case "tables":
		t, err := r.Tables(ctx)
		if err != nil {
			return err
		}
		return kvTables(t, stdout, asJSON)
	case "keys":
		keys, more, err := r.Keys(ctx, pos[0], after, limit)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(stdout, kv.KeysReply{Keys: keys, More: more})
		}
		for _, k := range keys {
			fmt.Fprintln(stdout, k)
		}
		return nil
	case "get":
		v, err := r.Get(ctx, pos[0], pos[1])
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(stdout, v)
		}
		_, err = fmt.Fprintln(stdout, string(v.Value))
		return err
	case "rejections":
		table := ""
		if len(pos) > 0 {
			table = pos[0]
		}
		rs, err := r.Rejections(ctx, table)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if asJSON {
				if err := printJSON(stdout, r); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintf(stdout, "%s@%d seq %d: %s\n", r.Position.ESK, r.Position.Index, r.Position.Seq, r.Reason)
		}
		return nil
	}
	return fmt.Errorf("kv: %s is not a read", sub)
}

func kvTables(t kv.TablesReply, stdout io.Writer, asJSON bool) error {
	if asJSON {
		for _, t := range t.Tables {
			if err := printJSON(stdout, t); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tTYPE\tKEYS\tOPS\tREJECTED")
	for _, t := range t.Tables {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", t.Name, t.Type, t.Keys, t.Ops, t.Rejected)
	}
	if n := t.UndeclaredRejected; n > 0 {
		fmt.Fprintf(tw, "%s\t\t\t\t%d\n", "(undeclared)", n)
	}
	return tw.Flush()
}

func printJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, strings.TrimSpace(string(b)))
	return err
}
