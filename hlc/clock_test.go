package hlc

import (
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

type op int

const (
	send op = iota // call Now
	recv           // call Update with the step's remote timestamp
)

func (o op) String() string {
	if o == send {
		return "SEND"
	}
	return "RECV"
}

// step is one event of a protocol run: the manual wall clock is set to wall,
// then op is performed and its result compared against want.
type step struct {
	wall    int64
	op      op
	remote  Timestamp
	want    Timestamp
	wantErr bool // Update must fail with an *OffsetError and leave the clock unchanged
}

func ts(wall int64, logical uint32) Timestamp {
	return Timestamp{WallTime: wall, Logical: logical}
}

func TestClockProtocol(t *testing.T) {
	const maxU = math.MaxUint32
	scenarios := []struct {
		name      string
		maxOffset time.Duration
		steps     []step
	}{
		{
			name:      "bounded",
			maxOffset: 100,
			steps: []step{
				{wall: 1, op: send, want: ts(1, 0)},
				{wall: 1, op: send, want: ts(1, 1)},                         // wall still: logical increments
				{wall: 2, op: send, want: ts(2, 0)},                         // wall advances
				{wall: 1, op: send, want: ts(2, 1)},                         // wall goes backwards
				{wall: 1, op: send, want: ts(2, 2)},                         // still behind
				{wall: 3, op: recv, remote: ts(2, 5), want: ts(3, 0)},       // remote behind wall
				{wall: 3, op: recv, remote: ts(3, 5), want: ts(3, 6)},       // remote equal wall, higher logical
				{wall: 3, op: send, want: ts(3, 7)},                         // wall not ahead of last
				{wall: 4, op: recv, remote: ts(50, 2), want: ts(50, 3)},     // remote ahead within offset
				{wall: 5, op: send, want: ts(50, 4)},                        // clock stays ahead of wall
				{wall: 5, op: recv, remote: ts(106, 0), wantErr: true},      // 1ns beyond offset: rejected
				{wall: 5, op: send, want: ts(50, 5)},                        // rejection did not move the clock
				{wall: 5, op: recv, remote: ts(105, 0), want: ts(105, 1)},   // exactly at the bound: accepted
				{wall: 5, op: recv, remote: ts(10, 0), want: ts(105, 2)},    // remote behind last
				{wall: 200, op: recv, remote: ts(150, 3), want: ts(200, 0)}, // wall ahead of both
				{wall: 200, op: send, want: ts(200, 1)},
				{wall: 150, op: recv, remote: ts(200, 1), want: ts(200, 2)},  // remote equals last
				{wall: 150, op: recv, remote: ts(200, 9), want: ts(200, 10)}, // same wall, higher logical than last
				{wall: 150, op: recv, remote: ts(200, 3), want: ts(200, 11)}, // same wall, lower logical than last
				{wall: 150, op: recv, remote: ts(1e6, 0), wantErr: true},     // far ahead of a backwards wall
				{wall: 201, op: send, want: ts(201, 0)},
			},
		},
		{
			name:      "unbounded zero offset",
			maxOffset: 0,
			steps: []step{
				{wall: 10, op: send, want: ts(10, 0)},
				{wall: 10, op: recv, remote: ts(1e18, 0), want: ts(1e18, 1)},
				{wall: 11, op: send, want: ts(1e18, 2)},
				{wall: 11, op: recv, remote: ts(math.MaxInt64-1, 7), want: ts(math.MaxInt64-1, 8)},
			},
		},
		{
			name:      "unbounded negative offset",
			maxOffset: -time.Second,
			steps: []step{
				{wall: 10, op: recv, remote: ts(1e18, 4), want: ts(1e18, 5)},
			},
		},
		{
			name:      "offset bound does not overflow",
			maxOffset: time.Duration(math.MaxInt64),
			steps: []step{
				{wall: 10, op: recv, remote: ts(math.MaxInt64-1, 0), want: ts(math.MaxInt64-1, 1)},
			},
		},
		{
			name:      "logical overflow",
			maxOffset: 0,
			steps: []step{
				{wall: 5, op: recv, remote: ts(5, maxU-1), want: ts(5, maxU)},
				{wall: 5, op: send, want: ts(6, 0)},                      // Now overflows into the wall time
				{wall: 5, op: recv, remote: ts(6, maxU), want: ts(7, 0)}, // Update overflows too
				{wall: 5, op: send, want: ts(7, 1)},
				{wall: 5, op: recv, remote: ts(9, maxU), want: ts(10, 0)},
				{wall: 10, op: send, want: ts(10, 1)},
			},
		},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			mc := NewManualClock(0)
			c := NewClock(mc.Now, sc.maxOffset)
			if got := c.MaxOffset(); got != sc.maxOffset {
				t.Fatalf("MaxOffset() = %v, want %v", got, sc.maxOffset)
			}
			for i, s := range sc.steps {
				mc.Set(s.wall)
				before := c.Last()
				var got Timestamp
				var err error
				if s.op == send {
					got = c.Now()
				} else {
					got, err = c.Update(s.remote)
				}
				if s.wantErr {
					var oe *OffsetError
					if !errors.Is(err, ErrUntrustedRemote) || !errors.As(err, &oe) {
						t.Fatalf("step %d %v %s: err = %v, want *OffsetError wrapping ErrUntrustedRemote", i, s.op, s.remote, err)
					}
					if oe.Remote != s.remote || oe.Local.UnixNano() != s.wall || oe.MaxOffset != sc.maxOffset {
						t.Errorf("step %d: OffsetError = %+v", i, *oe)
					}
					if !got.IsZero() {
						t.Errorf("step %d: rejected Update returned %s, want zero", i, got)
					}
					if last := c.Last(); last != before {
						t.Errorf("step %d: rejected Update moved clock from %s to %s", i, before, last)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d %v %s: unexpected error %v", i, s.op, s.remote, err)
				}
				if got != s.want {
					t.Fatalf("step %d %v %s at wall %d: got %s, want %s", i, s.op, s.remote, s.wall, got, s.want)
				}
				if last := c.Last(); last != got {
					t.Errorf("step %d: Last() = %s, want %s", i, last, got)
				}
				if !before.Less(got) {
					t.Errorf("step %d: %s is not after previous %s", i, got, before)
				}
				if s.op == recv && !s.remote.Less(got) {
					t.Errorf("step %d: %s is not after remote %s", i, got, s.remote)
				}
			}
		})
	}
}

func TestOffsetErrorMessage(t *testing.T) {
	mc := NewManualClock(1_000_000_000)
	c := NewClock(mc.Now, 250*time.Millisecond)
	_, err := c.Update(ts(2_000_000_000, 0))
	if err == nil {
		t.Fatal("Update accepted a remote timestamp 1s ahead with a 250ms bound")
	}
	msg := err.Error()
	for _, want := range []string{ErrUntrustedRemote.Error(), "1s ahead", "250ms", "2000000000.0000000000"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
}

func TestClockDefaults(t *testing.T) {
	for name, c := range map[string]*Clock{"zero value": new(Clock), "nil wall": NewClock(nil, 0)} {
		if !c.Last().IsZero() {
			t.Errorf("%s: Last() = %s before any event, want zero", name, c.Last())
		}
		before := time.Now().UnixNano()
		got := c.Now()
		after := time.Now().UnixNano()
		if got.WallTime < before || got.WallTime > after {
			t.Errorf("%s: Now() = %s, want wall time within [%d, %d]", name, got, before, after)
		}
		if c.MaxOffset() != 0 {
			t.Errorf("%s: MaxOffset() = %v, want 0", name, c.MaxOffset())
		}
		if _, err := c.Update(ts(math.MaxInt64-1, 0)); err != nil {
			t.Errorf("%s: Update without bound failed: %v", name, err)
		}
	}
}

func TestManualClock(t *testing.T) {
	mc := NewManualClock(42)
	if got := mc.Now(); got.UnixNano() != 42 || got.Location() != time.UTC {
		t.Fatalf("Now() = %v, want 42ns UTC", got)
	}
	mc.Increment(8)
	if got := mc.Now().UnixNano(); got != 50 {
		t.Fatalf("after Increment(8): %d, want 50", got)
	}
	mc.Set(7)
	if got := mc.Now().UnixNano(); got != 7 {
		t.Fatalf("after Set(7): %d, want 7", got)
	}
	var zero ManualClock
	if got := zero.Now().UnixNano(); got != 0 {
		t.Fatalf("zero ManualClock reads %d, want 0", got)
	}
}

func TestClockConcurrentNow(t *testing.T) {
	const goroutines, calls = 8, 10_000
	frozen := NewManualClock(1_700_000_000_000_000_000)
	clocks := map[string]*Clock{
		"real wall clock":   NewClock(nil, 0),
		"frozen wall clock": NewClock(frozen.Now, 0),
	}
	for name, c := range clocks {
		t.Run(name, func(t *testing.T) {
			results := make([][]Timestamp, goroutines)
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					seq := make([]Timestamp, calls)
					for i := range seq {
						seq[i] = c.Now()
					}
					results[g] = seq
				})
			}
			wg.Wait()
			seen := make(map[Timestamp]int, goroutines*calls)
			for g, seq := range results {
				for i, ts := range seq {
					if i > 0 && !seq[i-1].Less(ts) {
						t.Fatalf("goroutine %d: call %d returned %s after %s", g, i, ts, seq[i-1])
					}
					if other, dup := seen[ts]; dup {
						t.Fatalf("timestamp %s returned to goroutines %d and %d", ts, other, g)
					}
					seen[ts] = g
				}
			}
		})
	}
}
