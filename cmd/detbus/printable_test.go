package main

import (
	"context"
	"strings"
	"testing"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
	"github.com/nats-io/nats.go/jetstream"
)

// TestTerminalEscapesArePrinted: an ESK and a payload carrying terminal
// escape sequences, published by a raw client, come out of tail and
// status as visible escapes, never as the bytes a terminal would act on.
func TestTerminalEscapesArePrinted(t *testing.T) {
	srv := testnats.Node(t)
	testnats.Log(t, srv.ClientURL(), transport.Config{})
	js, err := jetstream.New(testnats.Conn(t, srv.ClientURL()))
	if err != nil {
		t.Fatal(err)
	}
	const esk = "evil.\x1b]0;owned\x07"
	if _, err := js.Publish(context.Background(), "events."+esk, []byte("{\"x\":\"\x1b[2J\x1b[31mred\\\"}\x9b")); err != nil {
		t.Fatal(err)
	}
	url := srv.ClientURL()
	for _, args := range [][]string{{"tail", "evil.*"}, {"status"}} {
		out, err := runCLI(t, append(args, "--nats", url)...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		if strings.ContainsAny(out, "\x1b\x07\x9b") || strings.Contains(out, "\u009b") {
			t.Fatalf("%v printed control bytes: %q", args, out)
		}
		if !strings.Contains(out, `evil.\x1b]0;owned\x07`) {
			t.Fatalf("%v does not show the ESK escaped: %q", args, out)
		}
	}
	if out, _ := runCLI(t, "tail", "evil.*", "--nats", url); !strings.Contains(out, `\x1b[2J\x1b[31mred\\"}\x9b`) {
		t.Fatalf("tail does not show the payload escaped: %q", out)
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"orders.eu":   "orders.eu",
		"a\x1bb":      `a\x1bb`,
		"tab\there":   `tab\x09here`,
		"über":        "über",
		"c1\u0085":    `c1\u0085`,
		"bad\xffutf8": `bad\xffutf8`,
		`back\slash`:  `back\\slash`,
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
}
