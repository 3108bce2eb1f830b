package transform_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
)

// TestRandomKillSchedules: for 1, 2, 3 and 5 instances, inputs arrive
// while a random schedule stops instances (any of them, the winner
// included) and starts new ones; the output log must equal the reference
// run byte for byte.
func TestRandomKillSchedules(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5} {
		t.Run(fmt.Sprintf("%d instances", n), func(t *testing.T) {
			s := testnats.Node(t)
			killSchedule(t, s.ClientURL(), transport.Config{}, n, uint64(n))
		})
	}
}

// TestThreeInstancesOnCluster: three instances on a three-node cluster
// with the log replicated three times, one stopped mid-stream and
// restarted.
func TestThreeInstancesOnCluster(t *testing.T) {
	servers := testnats.Cluster(t, 3)
	killSchedule(t, testnats.URLs(servers), transport.Config{Replicas: 3}, 3, 42)
}

func killSchedule(t *testing.T, url string, lc transport.Config, n int, seed uint64) {
	const inputs = 240
	rng := rand.New(rand.NewPCG(seed, 99))
	l := testnats.Log(t, url, lc)
	writeInputs(t, l, 0, inputs/2)
	spec := sumSpec("ks", "ks.out")
	running := map[int]*instance{}
	next := 0
	launch := func() {
		cfg := transform.Config{Spec: spec, Instance: fmt.Sprint("i", next)}
		cfg.Log = testnats.Log(t, url, lc)
		running[next] = startWith(t, cfg)
		next++
	}
	for range n {
		launch()
	}
	written := inputs / 2
	for step := 0; written < inputs || step < 6; step++ {
		if written < inputs {
			writeInputs(t, l, written, 20)
			written += 20
		}
		// Stop one at random (possibly the last one: then start another
		// first, so that the output goes on), then maybe start one.
		if len(running) > 0 && rng.IntN(2) == 0 {
			keys := make([]int, 0, len(running))
			for k := range running {
				keys = append(keys, k)
			}
			victim := keys[rng.IntN(len(keys))]
			if len(running) == 1 {
				launch()
			}
			running[victim].halt(t)
			delete(running, victim)
		}
		if len(running) < n && rng.IntN(2) == 0 {
			launch()
		}
		// Let the output make progress before the next change.
		before, _ := l.Count(ctxT(t), "ks.out")
		done, _ := expected(written)
		testnats.WaitFor(t, 30*time.Second, "output progress", func() error {
			c, err := l.Count(ctxT(t), "ks.out")
			if err != nil || (c == before && c < done) {
				return fmt.Errorf("%d outputs, %v", c, err)
			}
			return nil
		})
	}
	for len(running) < n {
		launch()
	}
	want, rejected := expected(inputs)
	waitOutputs(t, l, "ks.out", want)
	waitOutputs(t, l, "ks.out.rejected", rejected)
	ref := reference(t, url, l, inputs)
	if got := outputsOf(t, l, "ks.out"); fmt.Sprint(got) != fmt.Sprint(ref) {
		t.Fatal("output under the kill schedule differs from the reference run")
	}
	for k, in := range running {
		if st := in.r.Status(); len(st.Divergences) != 0 {
			t.Fatalf("instance i%d diverged: %v", k, st.Divergences)
		}
	}
}
