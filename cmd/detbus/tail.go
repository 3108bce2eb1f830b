package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/detbus/detbus/transport"
)

type tailLine struct {
	ESK   string          `json:"esk"`
	Index uint64          `json:"index"`
	Seq   uint64          `json:"seq"`
	Time  string          `json:"time"`
	Event json.RawMessage `json:"event"`
}

func runTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("tail", stderr)
	var cf clientFlags
	cf.register(fs)
	from := fs.Uint64("from", 0, "first index to print (literal ESK only)")
	fromSeq := fs.Uint64("from-seq", 0, "first stream sequence to print")
	follow := fs.Bool("follow", false, "keep printing events as they are written")
	asJSON := fs.Bool("json", false, "print one JSON object per event")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return helpOK(err)
	}
	pattern := pos[0]
	if err := transport.ValidateESKPattern(pattern); err != nil {
		return usagef("%v", err)
	}
	literal := !strings.ContainsAny(pattern, "*>")
	if *from > 0 && !literal {
		return usagef("--from is an index of one ESK; use --from-seq with the pattern %q", pattern)
	}
	l, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer l.Close()
	start := *fromSeq
	if *from > 0 {
		ev, err := l.Get(ctx, pattern, *from)
		switch {
		case errors.Is(err, transport.ErrNotFound) && *follow:
			n, cerr := l.Count(ctx, pattern)
			if cerr != nil {
				return cerr
			}
			return fmt.Errorf("%q has %d events; --from %d is ahead of it", pattern, n, *from)
		case err != nil:
			return err
		}
		start = max(start, ev.Seq)
	}
	printed := false
	for ev, err := range l.Events(ctx, []string{pattern}, transport.ReadOptions{From: start, Follow: *follow}) {
		if err != nil {
			return err
		}
		if err := printEvent(stdout, ev, *asJSON); err != nil {
			return err
		}
		printed = true
	}
	if !printed && ctx.Err() == nil {
		where := ""
		if start > 0 {
			where = fmt.Sprintf(" from seq %d on", start)
		}
		if literal {
			fmt.Fprintf(stderr, "tail: ESK %s has no events%s\n", printable(pattern), where)
		} else {
			fmt.Fprintf(stderr, "tail: no ESK matching %s has events%s\n", printable(pattern), where)
		}
	}
	return nil
}

func printEvent(w io.Writer, ev transport.Event, asJSON bool) error {
	ts := ev.Time.Time().Format(time.RFC3339Nano)
	if asJSON {
		line := tailLine{ESK: ev.ESK, Index: ev.Index, Seq: ev.Seq, Time: ts, Event: ev.Data}
		if !json.Valid(ev.Data) {
			line.Event, _ = json.Marshal(ev.Data)
		}
		out, _ := json.Marshal(line)
		_, err := fmt.Fprintln(w, string(out))
		return err
	}
	_, err := fmt.Fprintf(w, "%s #%d seq=%d %s %s\n", printable(ev.ESK), ev.Index, ev.Seq, ts, printable(string(ev.Data)))
	return err
}
