package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/detbus/detbus/transport"
)

func runTrace(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("trace", stderr)
	var cf clientFlags
	cf.register(fs)
	asJSON := fs.Bool("json", false, "print the path as JSON")
	pos, err := parse(fs, args, 2, 2)
	if err != nil {
		return helpOK(err)
	}
	esk := pos[0]
	if err := transport.ValidateESK(esk); err != nil {
		return usagef("%v", err)
	}
	index, err := strconv.ParseUint(pos[1], 10, 64)
	if err != nil {
		return usagef("index %q is not a number from 0", pos[1])
	}
	l, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer l.Close()
	path, terr := l.Trace(ctx, esk, index)
	var broken *transport.BrokenLinkError
	if terr != nil && !errors.As(terr, &broken) {
		return terr
	}
	if *asJSON {
		out := struct {
			Path   []transport.TraceStep `json:"path"`
			Broken string                `json:"broken,omitempty"`
		}{Path: path}
		if broken != nil {
			out.Broken = broken.Error()
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		printTrace(stdout, path)
	}
	if broken != nil {
		return fmt.Errorf("broken link from %s#%d (seq %d of %s) to its input %s: %s", printable(broken.From.ESK), broken.From.Index,
			broken.From.Seq, broken.From.Stream, printable(broken.Input.String()), printable(broken.Reason))
	}
	return nil
}

// printTrace prints a path from an output back to its source, one event
// a line, each link with the hash checked.
func printTrace(w io.Writer, path []transport.TraceStep) {
	for i, s := range path {
		fmt.Fprintf(w, "%s#%d  seq %d of %s  hash %s\n", printable(s.ESK), s.Index, s.Seq, s.Stream, s.Hash)
		switch {
		case s.Input == nil:
			fmt.Fprintf(w, "  a source's event\n")
		case i+1 < len(path):
			fmt.Fprintf(w, "  made from %s: hash matches\n", printable(s.Input.String()))
		default:
			fmt.Fprintf(w, "  made from %s: BROKEN\n", printable(s.Input.String()))
		}
	}
}
