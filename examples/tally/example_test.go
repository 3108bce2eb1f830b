package tally_test

import (
	"fmt"

	"github.com/detbus/detbus/examples/tally"
	"github.com/detbus/detbus/transform"
)

// The tally applied to three moves, as a worker applies them.
func Example() {
	d := tally.New()
	for _, m := range []string{`{"item":"bolt","qty":5}`, `{"item":"bolt","qty":-2}`, `{"item":"bolt","qty":-9}`} {
		in := transform.Input{ESK: "tally.moves.w1", Data: []byte(m)}
		out, err := d.Step(transform.NewContext(in), in)
		if err != nil {
			fmt.Println("rejected:", err)
			continue
		}
		fmt.Println(string(out[0]))
	}
	// Output:
	// {"warehouse":"w1","item":"bolt","level":5}
	// {"warehouse":"w1","item":"bolt","level":3}
	// rejected: bolt in w1: 3 in stock, 9 asked
}
