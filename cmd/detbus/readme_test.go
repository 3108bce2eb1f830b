package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
)

// TestReadme runs the README's command blocks as a newcomer would, in the
// README's order: `go run ./cmd/detbus ...` lines through run, nats CLI
// lines with the nats CLI. Commands that run until interrupted (serve,
// tasks work, tail --follow) run in the background until the end of
// their block; a read is asked again until it succeeds (a cluster that is
// still forming, a task not dead yet), a write is run once; a comment
// "-> X" is output the command must print.
//
// The single node of "Start" is started on free ports and the blocks
// that use it reach it through $DETBUS_NATS (nats --server for the nats
// CLI). The cluster by hand runs as written, in a directory of its own,
// with every port it names replaced by a free one.
func TestReadme(t *testing.T) {
	blocks := readmeBlocks(t)
	var cli string
	t.Run("nats CLI", func(t *testing.T) { cli = testnats.NatsCLI(t) }) // skips when there is none
	r := &readmeRunner{t: t, cli: cli}

	// Start: the node, then the blocks that use it.
	url, _ := startServe(t)
	t.Setenv("DETBUS_NATS", url)
	r.url = url
	const tryIt = `go run ./cmd/detbus write orders.eu`
	for _, marker := range []string{
		tryIt,
		`nats pub -J events.orders.eu`, // Try it, with the nats CLI
		`nats pub events.kv._config`,   // Key/value store, with the nats CLI
		`go run ./cmd/detbus kv create users lww`, // Key/value store
		`nats pub events.tasks.emails`,            // Task queue, with the nats CLI
		`go run ./cmd/detbus tasks create`,        // Task queue
	} {
		bg := r.run(findBlock(t, blocks, marker), nil)
		if marker != tryIt {
			continue
		}
		if f := bg["tail orders.eu --follow"]; f == nil || !strings.Contains(f.String(), "orders.eu #1 ") {
			t.Errorf("tail --follow printed:\n%v", f)
		}
	}

	// A three-node cluster, the same cluster by hand.
	t.Chdir(t.TempDir())
	block := findBlock(t, blocks, `R=nats-route://`)
	r.url = ""
	r.run(block, freePortsFor(t, block))

	// Sites by hand.
	block = findBlock(t, blocks, `serve --site a`)
	r.run(block, freePortsFor(t, block))
}

// readmeBlock is a ```sh block of the README.
type readmeBlock struct {
	heading string   // the heading it is under
	lines   []string // its lines, as written
}

// readmeBlocks returns the README's ```sh blocks in order.
func readmeBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []readmeBlock
	var heading string
	var cur *readmeBlock
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case cur == nil && line == "```sh":
			cur = &readmeBlock{heading: heading}
		case cur == nil && strings.HasPrefix(line, "#"):
			heading = line
		case cur != nil && line == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.lines = append(cur.lines, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return blocks
}

// findBlock returns the block with a line that contains marker.
func findBlock(t *testing.T, blocks []readmeBlock, marker string) readmeBlock {
	t.Helper()
	for _, b := range blocks {
		for _, l := range b.lines {
			if strings.Contains(l, marker) {
				return b
			}
		}
	}
	t.Fatalf("the README has no sh block with %q", marker)
	return readmeBlock{}
}

// portPattern finds the ports a block names: in host:port, and as the
// value of a port flag.
var portPattern = regexp.MustCompile(`(127\.0\.0\.1:|--(?:port|http-port|cluster-port|gateway-port)[ =])([0-9]+)`)

// freePortsFor returns a rewrite of the block's lines that replaces each
// port it names with a free one, the same port for the same number.
func freePortsFor(t *testing.T, b readmeBlock) func(string) string {
	t.Helper()
	ports := map[string]string{}
	for _, l := range b.lines {
		for _, m := range portPattern.FindAllStringSubmatch(l, -1) {
			ports[m[2]] = ""
		}
	}
	free := testnats.FreePorts(t, len(ports))
	i := 0
	for p := range ports {
		ports[p] = strconv.Itoa(free[i])
		i++
	}
	return func(l string) string {
		return portPattern.ReplaceAllStringFunc(l, func(s string) string {
			m := portPattern.FindStringSubmatch(s)
			return m[1] + ports[m[2]]
		})
	}
}

// readmeRunner runs the lines of README blocks.
type readmeRunner struct {
	t   *testing.T
	cli string // the nats CLI; "" to skip its lines
	url string // the server nats CLI lines talk to
}

// run runs the block's lines in order, rewritten by rewrite when it is
// not nil, and returns the output of the commands it ran in the
// background, by command line (without "go run ./cmd/detbus"), once
// they have been stopped at the end of the block.
func (r *readmeRunner) run(b readmeBlock, rewrite func(string) string) map[string]*testnats.SyncBuffer {
	t := r.t
	t.Helper()
	vars := map[string]string{}
	type background struct {
		line   string
		p      *proc
		cancel context.CancelFunc
	}
	var bgs []background
	var starting []*proc // serve commands not yet seen ready
	ready := func() {
		for _, p := range starting {
			p.waitOutput(t, 2*time.Minute, "detbus node ready")
		}
		starting = nil
	}
	for _, line := range b.lines {
		if rewrite != nil {
			line = rewrite(line)
		}
		sl, err := parseShellLine(line, vars)
		if err != nil {
			t.Fatalf("%s: %q: %v", b.heading, line, err)
		}
		switch {
		case sl.assign != "":
			vars[sl.assign] = sl.value
		case len(sl.words) > 3 && strings.Join(sl.words[:3], " ") == "go run ./cmd/detbus":
			args := sl.words[3:]
			if !untilInterrupted(args) {
				ready() // nodes of a cluster become ready together
				r.foreground(b.heading, line, args, sl.expect())
				continue
			}
			ctx, cancel := context.WithCancel(context.Background())
			p := newProc(line)
			go func() {
				p.err = run(ctx, args, p.out, p.out)
				close(p.done)
			}()
			t.Cleanup(func() {
				cancel()
				<-p.done
				p.logIfFailed(t)
			})
			bgs = append(bgs, background{line: strings.Join(args, " "), p: p, cancel: cancel})
			if args[0] == "serve" {
				starting = append(starting, p)
			}
		case len(sl.words) > 0 && sl.words[0] == "nats":
			if r.cli == "" {
				t.Logf("%s: no nats CLI, skipped: %s", b.heading, line)
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			out, err := testnats.NatsCommand(t, ctx, r.cli, r.url, sl.words[1:]...).CombinedOutput()
			cancel()
			if err != nil || !strings.Contains(string(out), sl.expect()) {
				t.Fatalf("%s: %s: %v\n%s", b.heading, line, err, out)
			}
		case len(sl.words) > 0:
			t.Logf("%s: not a detbus or nats command, skipped: %s", b.heading, line)
		}
	}
	ready()
	outs := map[string]*testnats.SyncBuffer{}
	for i := len(bgs) - 1; i >= 0; i-- {
		bg := bgs[i]
		// A command the block started last may not have printed yet.
		testnats.WaitFor(t, 30*time.Second, bg.line+" to print", func() error {
			if bg.p.out.Len() == 0 {
				return errors.New("nothing yet")
			}
			return nil
		})
		bg.cancel()
		if err := bg.p.wait(t, time.Minute); err != nil {
			t.Errorf("%s: %s: %v\n%s", b.heading, bg.line, err, bg.p.out)
		}
		outs[bg.line] = bg.p.out
	}
	return outs
}

// foreground runs a command that returns by itself. A read is asked again
// until it succeeds and prints expect, for a minute at most; a write is
// run once.
func (r *readmeRunner) foreground(heading, line string, args []string, expect string) {
	t := r.t
	t.Helper()
	attempt := func() (string, error) {
		out, err := runCLI(t, args...)
		if err == nil && !strings.Contains(out, expect) {
			err = fmt.Errorf("the output lacks %q", expect)
		}
		return out, err
	}
	if !isRead(args) {
		if out, err := attempt(); err != nil {
			t.Fatalf("%s: %s: %v\n%s", heading, line, err, out)
		}
		return
	}
	var out string
	deadline := time.Now().Add(time.Minute)
	for {
		var err error
		if out, err = attempt(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s: %v\n%s", heading, line, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// untilInterrupted reports whether a command runs until it is stopped.
func untilInterrupted(args []string) bool {
	switch {
	case args[0] == "serve", args[0] == "worker", args[0] == "cluster", args[0] == "sites":
		return true
	case args[0] == "tasks" && len(args) > 1 && args[1] == "work":
		return true
	}
	for _, a := range args {
		if a == "--follow" || a == "-follow" {
			return true
		}
	}
	return false
}

// isRead reports whether a command only reads.
func isRead(args []string) bool {
	sub := ""
	if len(args) > 1 {
		sub = args[1]
	}
	switch args[0] {
	case "status", "tail":
		return true
	case "kv":
		return kvReads[sub]
	case "tasks":
		return sub == "list" || sub == "show" || sub == "dead" || sub == "rejected"
	}
	return false
}

// shellLine is a line of a README sh block: a command or an assignment.
type shellLine struct {
	words         []string
	comment       string // after an unquoted #
	assign, value string // VAR=value
}

// expect returns what a comment "-> X ..." says the command prints: X,
// up to the first space; "" when the comment says nothing of the kind.
func (l shellLine) expect() string {
	_, after, ok := strings.Cut(l.comment, "-> ")
	if !ok {
		return ""
	}
	x, _, _ := strings.Cut(after, " ")
	return x
}

var assignment = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)=(\S*)$`)

// parseShellLine splits a line as sh would for the commands of the
// README: words, single and double quotes, backslash escapes, $VAR from
// vars, and a comment from an unquoted # that starts a word.
func parseShellLine(line string, vars map[string]string) (shellLine, error) {
	var l shellLine
	if m := assignment.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
		l.assign, l.value = m[1], m[2]
		return l, nil
	}
	var word strings.Builder
	inWord := false
	expand := func(rs []rune, i int) (int, error) { // rs[i] is '$'
		j := i + 1
		for j < len(rs) && (rs[j] == '_' || rs[j] >= 'A' && rs[j] <= 'Z' || rs[j] >= 'a' && rs[j] <= 'z' || j > i+1 && rs[j] >= '0' && rs[j] <= '9') {
			j++
		}
		name := string(rs[i+1 : j])
		v, ok := vars[name]
		if !ok {
			return 0, fmt.Errorf("$%s is not set", name)
		}
		word.WriteString(v)
		return j, nil
	}
	rs := []rune(line)
	for i := 0; i < len(rs); {
		c := rs[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				l.words = append(l.words, word.String())
				word.Reset()
				inWord = false
			}
			i++
		case c == '#' && !inWord:
			l.comment = strings.TrimSpace(string(rs[i+1:]))
			i = len(rs)
		case c == '\'':
			end := i + 1
			for end < len(rs) && rs[end] != '\'' {
				end++
			}
			if end == len(rs) {
				return l, errors.New("unterminated '")
			}
			word.WriteString(string(rs[i+1 : end]))
			inWord, i = true, end+1
		case c == '"':
			i++
			for ; i < len(rs) && rs[i] != '"'; i++ {
				switch {
				case rs[i] == '\\' && i+1 < len(rs) && strings.ContainsRune("\"\\$`", rs[i+1]):
					i++
					word.WriteRune(rs[i])
				case rs[i] == '$':
					j, err := expand(rs, i)
					if err != nil {
						return l, err
					}
					i = j - 1
				default:
					word.WriteRune(rs[i])
				}
			}
			if i == len(rs) {
				return l, errors.New(`unterminated "`)
			}
			inWord, i = true, i+1
		case c == '\\' && i+1 < len(rs):
			word.WriteRune(rs[i+1])
			inWord, i = true, i+2
		case c == '$':
			j, err := expand(rs, i)
			if err != nil {
				return l, err
			}
			inWord, i = true, j
		case strings.ContainsRune("|&;<>`(){}*?[", c):
			return l, fmt.Errorf("%q is more shell than this test runs", c)
		default:
			word.WriteRune(c)
			inWord, i = true, i+1
		}
	}
	if inWord {
		l.words = append(l.words, word.String())
	}
	return l, nil
}

func TestParseShellLine(t *testing.T) {
	vars := map[string]string{"R": "a,b"}
	for _, c := range []struct {
		line    string
		words   []string
		comment string
		expect  string
	}{
		{`go run ./cmd/detbus write o.eu '{"q":3}'   # append: prints esk`, []string{"go", "run", "./cmd/detbus", "write", "o.eu", `{"q":3}`}, "append: prints esk", ""},
		{`x --index 1  # -> "outcome":"present","equal":false`, []string{"x", "--index", "1"}, `-> "outcome":"present","equal":false`, `"outcome":"present","equal":false`},
		{`serve --routes $R --exec 'grep @' "a \"b\" $R" c\ d ''`, []string{"serve", "--routes", "a,b", "--exec", "grep @", `a "b" a,b`, "c d", ""}, "", ""},
		{`list   # -> m2 (after 1s)`, []string{"list"}, "-> m2 (after 1s)", "m2"},
		{`a#b`, []string{"a#b"}, "", ""},
	} {
		l, err := parseShellLine(c.line, vars)
		if err != nil || !slices.Equal(l.words, c.words) || l.comment != c.comment || l.expect() != c.expect {
			t.Errorf("%s: %q %q %q, %v", c.line, l.words, l.comment, l.expect(), err)
		}
	}
	if l, err := parseShellLine(`R=nats-route://h:1,nats-route://h:2`, vars); err != nil || l.assign != "R" || l.value != "nats-route://h:1,nats-route://h:2" {
		t.Errorf("assignment: %+v, %v", l, err)
	}
	for _, bad := range []string{`echo 'open`, `echo "open`, `echo $NOPE`, `a | b`, `a; b`} {
		if _, err := parseShellLine(bad, vars); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
