package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/detbus/detbus/transport"
)

type writeResult struct {
	ESK     string `json:"esk"`
	Index   uint64 `json:"index"`
	Seq     uint64 `json:"seq"`
	Outcome string `json:"outcome"`
	Equal   *bool  `json:"equal,omitempty"`
}

func runWrite(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("write", stderr)
	var cf clientFlags
	cf.register(fs)
	index := fs.Int64("index", -1, "append only if this is the ESK's next index (conditional append)")
	pos, err := parse(fs, args, 2, 2)
	if err != nil {
		return helpOK(err)
	}
	esk, body := pos[0], []byte(pos[1])
	if err := transport.ValidateESK(esk); err != nil {
		return usagef("%v", err)
	}
	if !json.Valid(body) {
		var v any
		err := json.Unmarshal(body, &v)
		return usagef("event for %q is not valid JSON: %v", esk, err)
	}
	l, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer l.Close()
	var res writeResult
	if *index >= 0 {
		r, err := l.ExistsOrWrite(ctx, esk, uint64(*index), body)
		if err != nil {
			return err
		}
		res = writeResult{ESK: r.ESK, Index: r.Index, Seq: r.Seq, Outcome: r.Outcome.String(), Equal: &r.Equal}
	} else {
		p, err := l.Write(ctx, esk, body)
		if err != nil {
			return err
		}
		res = writeResult{ESK: p.ESK, Index: p.Index, Seq: p.Seq, Outcome: transport.Written.String()}
	}
	out, _ := json.Marshal(res)
	_, err = fmt.Fprintln(stdout, string(out))
	return err
}
