package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
)

// TestServeSaysWhyItCannotStart: serve on a port that is taken, or with
// a data directory it cannot make, fails at once and names the port or
// the directory.
func TestServeSaysWhyItCannotStart(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := fmt.Sprint(busy.Addr().(*net.TCPAddr).Port)
	free := testnats.FreePorts(t, 1)[0]
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"serve", "--http", "", "--http-port", "0"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--port", port, "--data", t.TempDir()}, "client port 127.0.0.1:" + port},
		{[]string{"--port", fmt.Sprint(free), "--http-port", port, "--data", t.TempDir()}, "monitoring port 127.0.0.1:" + port},
		{[]string{"--port", fmt.Sprint(free), "--data", filepath.Join(file, "data")}, "data directory " + filepath.Join(file, "data")},
	} {
		start := time.Now()
		out, err := runCLI(t, append(base, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("serve %q: %v, want an error naming %q\n%s", c.args, err, c.want, out)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("serve %q failed after %v", c.args, took)
		}
	}
}
