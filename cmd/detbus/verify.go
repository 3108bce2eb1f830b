package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/detbus/detbus/transport"
)

// verifyState is what `detbus verify` keeps between runs for one stream:
// the newest checkpoint it confirmed, where the next run resumes.
type verifyState struct {
	Stream  string                        `json:"stream"`
	Created string                        `json:"created"` // the stream's creation time: a stream made anew is another log
	Resume  *transport.VerifiedCheckpoint `json:"resume"`
}

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("verify", stderr)
	var cf clientFlags
	cf.register(fs)
	copyOf := fs.String("copy", "", "verify this site's copy of the named site's log (with --site)")
	against := fs.String("against", "", "a stream holding the same log (the origin, or another copy) to locate the first event that differs")
	stateFile := fs.String("state", "", "file keeping the last checkpoint confirmed, to resume from (default: in the user cache directory, per stream)")
	fromStart := fs.Bool("from-start", false, "verify from the first event, ignoring the state")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return helpOK(err)
	}
	if *copyOf != "" && cf.Site == "" {
		return usagef("verify --copy %s needs --site: the site holding the copy", *copyOf)
	}
	l, err := cf.open(ctx)
	if err != nil {
		return err
	}
	defer l.Close()
	if *copyOf != "" {
		c, err := l.Copy(ctx, *copyOf)
		if err != nil {
			return err
		}
		defer c.Close()
		l = c
	}
	var opts transport.VerifyOptions
	if *against != "" {
		ref, err := transport.Open(ctx, l.Conn(), transport.Config{Stream: *against, Prefix: l.Config().Prefix, NoProvision: true, Timeout: cf.Timeout})
		if err != nil {
			return fmt.Errorf("--against %s: %w", *against, err)
		}
		defer ref.Close()
		opts.Against = ref
	}
	st, err := l.State(ctx, "")
	if err != nil {
		return err
	}
	stream := l.Config().Stream
	state := verifyState{Stream: stream, Created: st.Created.UTC().Format("2006-01-02T15:04:05.000000000Z")}
	path := *stateFile
	if path == "" {
		if path, err = defaultVerifyState(stream, st.Created.UnixNano()); err != nil {
			return err
		}
	}
	if !*fromStart {
		saved, err := readVerifyState(path)
		if err != nil {
			return err
		}
		if saved.Stream == state.Stream && saved.Created == state.Created {
			opts.From = saved.Resume
		}
	}
	rep, verr := l.VerifyChain(ctx, opts)
	if verr != nil && !errors.Is(verr, transport.ErrChainMismatch) {
		return verr
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printChainReport(stdout, rep, opts.From)
	}
	if !rep.OK() {
		return fmt.Errorf("stream %s: %d problem(s), the first: %s", stream, len(rep.Problems), rep.Problems[0])
	}
	// Only a clean verification moves the resume point: one that found a
	// problem finds it again next time.
	state.Resume = rep.Resume
	return writeVerifyState(path, state)
}

func printChainReport(w io.Writer, rep transport.ChainReport, from *transport.VerifiedCheckpoint) {
	whose := "its own chain"
	if rep.Origin != rep.Stream {
		whose = "a copy of " + rep.Origin
	}
	start := "from the first event"
	if from != nil {
		start = fmt.Sprintf("resumed after position %d, confirmed by the checkpoint at position %d", from.Seq, from.At)
	}
	fmt.Fprintf(w, "stream %s (%s): positions %d..%d, %s hashed, %s\n", rep.Stream, whose, rep.From, rep.To, plural(rep.Events, "event"), start)
	fmt.Fprintf(w, "checkpoints: %d met, %d confirmed\n", rep.Checkpoints, rep.Confirmed)
	if r := rep.Resume; r != nil {
		fmt.Fprintf(w, "verified up to position %d (the checkpoint at position %d, by %s)", r.Seq, r.At, printable(r.By))
		if rep.To > r.At {
			fmt.Fprintf(w, "; positions %d..%d wait for the next checkpoint", r.At+1, rep.To)
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintf(w, "no checkpoint confirmed yet: nothing is verified\n")
	}
	fmt.Fprintf(w, "chain at position %d: %s\n", rep.Head.Seq, rep.Head.Hash)
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "PROBLEM: %s\n", printable(p.String()))
	}
	if rep.OK() {
		fmt.Fprintln(w, "ok")
	}
}

func plural(n uint64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func defaultVerifyState(stream string, created int64) (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory for the verification state (give --state FILE): %w", err)
	}
	return filepath.Join(dir, "detbus", "verify", fmt.Sprintf("%s-%d.json", stream, created)), nil
}

func readVerifyState(path string) (verifyState, error) {
	var s verifyState
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("verification state %s: %w (remove it, or give --from-start)", path, err)
	}
	return s, nil
}

func writeVerifyState(path string, s verifyState) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	data, _ := json.MarshalIndent(s, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
