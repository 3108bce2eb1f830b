package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
)

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("status", stderr)
	var cf clientFlags
	cf.register(fs)
	pattern := fs.String("esk", ">", "show ESKs matching this pattern")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return helpOK(err)
	}
	if err := transport.ValidateESKPattern(*pattern); err != nil {
		return usagef("%v", err)
	}
	l, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer l.Close()
	st, err := l.State(ctx, *pattern)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "stream %s: %d events, %d bytes, sequences %d..%d, replicas %d",
		st.Stream, st.Messages, st.Bytes, st.FirstSeq, st.LastSeq, st.Replicas)
	if st.Leader != "" {
		fmt.Fprintf(stdout, ", leader %s", st.Leader)
	}
	if !st.LastTime.IsZero() {
		fmt.Fprintf(stdout, ", last write %s", st.LastTime.UTC().Format(time.RFC3339))
	}
	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ESK\tCOUNT\n")
	for _, esk := range st.SortedESKs() {
		fmt.Fprintf(tw, "%s\t%d\n", printable(esk), st.ESKs[esk])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if l.Site() != "" {
		if err := printSite(ctx, stdout, l); err != nil {
			return err
		}
	}
	return printTransforms(ctx, stdout, l)
}

// printTransforms shows the instances of deterministic transforms that
// have published their status, with every divergence they found.
func printTransforms(ctx context.Context, w io.Writer, l *transport.Log) error {
	board, ok, err := transform.BindStatusBoard(ctx, l)
	if err != nil || !ok {
		return err
	}
	list, err := board.List(ctx, l.Config().Stream)
	if err != nil || len(list) == 0 {
		return err
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "TRANSFORM\tGEN\tOUTPUT\tINSTANCE\tINPUT SEQ\tLAG\tOUTPUTS\tWON\tLOST\tREJECTED\tDIVERGENCES\tSTATE\tHEARTBEAT\n")
	now := time.Now()
	for _, s := range list {
		state := s.State(now) // stale: killed, or cut off from NATS
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s ago\n", printable(s.Name), max(s.Generation, 1), printable(s.Output), printable(s.Instance), s.InputSeq, s.Lag, s.Outputs, s.Won, s.Lost,
			s.Rejections, len(s.Divergences), state, now.Sub(s.Updated).Round(time.Second))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range list {
		if s.Shadow {
			fmt.Fprintf(w, "SHADOW %s/%s (version %s): %d outputs match, %d differ\n", printable(s.Name), printable(s.Instance), printable(s.Version), s.Matches, s.Mismatches)
			if m := s.FirstMismatch; m != nil {
				fmt.Fprintf(w, "FIRST MISMATCH %s/%s at output %d, from input %s seq %d: own sha256 %s, landed sha256 %s\n",
					printable(s.Name), printable(s.Instance), m.Index, printable(m.InputESK), m.InputSeq, printable(m.OwnHash), printable(m.FoundHash))
			}
		}
		for _, d := range s.Divergences {
			fmt.Fprintf(w, "DIVERGENCE %s\n", printable(d.Error()))
		}
		if s.Stopped != "" && s.Stopped != "stopped" {
			fmt.Fprintf(w, "%s/%s stopped: %s\n", printable(s.Name), printable(s.Instance), printable(s.Stopped))
		}
	}
	return nil
}
