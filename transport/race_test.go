package transport_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transport"
)

// TestExistsOrWriteRace: 8 writers, each with its own connection, race
// through existsOrWrite over 4 ESKs × 300 indices. Exactly one writer is
// told Written for each index, and the log holds each ESK's indices
// 0..299 with no gap and no duplicate.
func TestExistsOrWriteRace(t *testing.T) {
	t.Run("single node", func(t *testing.T) {
		s := testnats.Node(t)
		raceWriters(t, s.ClientURL(), transport.Config{}, 300)
	})
	t.Run("three-node cluster R3", func(t *testing.T) {
		servers := testnats.Cluster(t, 3)
		raceWriters(t, testnats.URLs(servers), transport.Config{Replicas: 3}, 300)
	})
}

type raceEvent struct {
	Writer int    `json:"writer"`
	ESK    string `json:"esk"`
	Index  uint64 `json:"index"`
}

func raceWriters(t *testing.T, url string, cfg transport.Config, indices uint64) {
	const writers = 8
	esks := []string{"race.a", "race.b", "race.c", "race.d"}
	ctx := ctxT(t)
	logs := make([]*transport.Log, writers)
	for w := range logs {
		logs[w] = testnats.Log(t, url, cfg)
	}
	var mu sync.Mutex
	won := map[string]int{} // "esk/index" -> writer told Written
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range indices {
				order := rng.Perm(len(esks))
				for _, k := range order {
					esk := esks[k]
					payload, _ := json.Marshal(raceEvent{Writer: w, ESK: esk, Index: i})
					r, err := logs[w].ExistsOrWrite(ctx, esk, i, payload)
					if err != nil {
						errs <- fmt.Errorf("writer %d %s@%d: %w", w, esk, i, err)
						return
					}
					if r.Index != i {
						errs <- fmt.Errorf("writer %d %s@%d: result for index %d", w, esk, i, r.Index)
						return
					}
					if r.Outcome == transport.Written {
						mu.Lock()
						key := esk + "/" + strconv.FormatUint(i, 10)
						if prev, dup := won[key]; dup {
							errs <- fmt.Errorf("%s reported written to writers %d and %d", key, prev, w)
						}
						won[key] = w
						mu.Unlock()
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	if want := len(esks) * int(indices); len(won) != want {
		t.Fatalf("%d indices reported written, want %d", len(won), want)
	}
	// A client with the default config leaves the stream's replication
	// as it is.
	reader := testnats.Log(t, url, transport.Config{})
	st, err := reader.State(ctx, "race.>")
	if err != nil {
		t.Fatal(err)
	}
	if want := max(cfg.Replicas, 1); st.Replicas != want {
		t.Fatalf("stream has %d replicas after a default client opened it, want %d", st.Replicas, want)
	}
	if st.Messages != uint64(len(esks))*indices {
		t.Fatalf("stream holds %d events, want %d", st.Messages, uint64(len(esks))*indices)
	}
	next := map[string]uint64{}
	for ev, err := range reader.Events(ctx, []string{"race.>"}, transport.ReadOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		var re raceEvent
		if err := json.Unmarshal(ev.Data, &re); err != nil {
			t.Fatalf("%s@%d: %v", ev.ESK, ev.Index, err)
		}
		if ev.Index != next[ev.ESK] || re.Index != ev.Index || re.ESK != ev.ESK {
			t.Fatalf("%s: event %+v at index %d, want index %d", ev.ESK, re, ev.Index, next[ev.ESK])
		}
		if h := ev.Header.Get(transport.HeaderWriteID); h == "" {
			t.Fatalf("%s@%d lacks the write identity header", ev.ESK, ev.Index)
		}
		if w := won[ev.ESK+"/"+strconv.FormatUint(ev.Index, 10)]; w != re.Writer {
			t.Fatalf("%s@%d was written by %d but writer %d was told Written", ev.ESK, ev.Index, re.Writer, w)
		}
		next[ev.ESK]++
	}
	for _, esk := range esks {
		if next[esk] != indices {
			t.Errorf("%s: read %d events, want %d", esk, next[esk], indices)
		}
	}
}
