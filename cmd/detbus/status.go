package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

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
		fmt.Fprintf(tw, "%s\t%d\n", esk, st.ESKs[esk])
	}
	return tw.Flush()
}
