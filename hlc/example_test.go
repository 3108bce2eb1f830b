package hlc_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/detbus/detbus/hlc"
)

func ExampleClock() {
	wall := hlc.NewManualClock(1_700_000_000_000_000_000)
	clock := hlc.NewClock(wall.Now, 500*time.Millisecond)

	// The wall clock stands still, so the logical counter orders events.
	fmt.Println(clock.Now())
	fmt.Println(clock.Now())

	// A message arrives from a node whose clock is 100ns ahead.
	wall.Increment(10)
	remote, err := hlc.Parse("1700000000000000100.0000000007")
	if err != nil {
		panic(err)
	}
	received, err := clock.Update(remote)
	fmt.Println(received, err)
	fmt.Println(clock.Now())

	// A timestamp a full second ahead exceeds the maximum offset.
	_, err = clock.Update(hlc.Timestamp{WallTime: 1_700_000_001_000_000_000})
	fmt.Println(errors.Is(err, hlc.ErrUntrustedRemote), clock.Last())

	// Output:
	// 1700000000000000000.0000000000
	// 1700000000000000000.0000000001
	// 1700000000000000100.0000000008 <nil>
	// 1700000000000000100.0000000009
	// true 1700000000000000100.0000000009
}
