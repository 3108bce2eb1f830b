// The matching demo runs several identical instances of the matching DET
// (package matching) against one log, feeds them random orders, and
// checks that the instances agree.
//
// Each instance is a [transform.Runner] of matching.Spec() with its own
// NATS connection. There is no leader: every instance reads the orders in
// the log's total order, matches them in its own order books, and appends
// the events they cause to "matching.events" with existsOrWrite at their
// indices. The fastest instance writes each event (won); the others find
// it written and equal to their own (lost). The demo writes random limit,
// market and cancel orders on two instruments, "orders.btc-eur" and
// "orders.eth-eur", with prices in integer ticks around 100. It then reads
// the orders back from the log in order and feeds them to a fresh engine
// offline, which says how many events the instances must write; it waits
// until the log has exactly that many, and prints the counts of acks,
// trades, dones, cancels and rejects, the last few trades, and how many
// events each instance won and lost.
//
// It then checks that the replicas agree: the events in the log are byte
// for byte those of the offline engine, and every instance has computed
// them all, found no divergence and rejected no input. It prints "replicas
// agree: yes", or exits with status 1 and says what differs.
//
// Run it with an embedded node, kept in a temporary directory that is
// removed at exit:
//
//	go run ./examples/matching/demo
//	go run ./examples/matching/demo --instances 5 --orders 2000 --seed 7
//
// or against a running node (started with `go run ./cmd/detbus serve`, say):
//
//	go run ./examples/matching/demo --nats nats://127.0.0.1:4222
//
// With --nats the demo appends to the node's existing log (stream EVENTS,
// prefix "events"): order ids continue after the orders already on
// "orders.*", the instances and the offline engine replay the whole log
// from its start (the instances keep no snapshots), and the checks cover
// the whole log, while the counts cover the events written since the run
// started. Other instances of the matching DET (`detbus worker matching`)
// may run meanwhile; other writers of orders may not, since the demo
// computes the expected events from the orders it finds once its own are
// written.
//
// Usage errors exit with status 2.
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"

	"github.com/detbus/detbus/examples/matching"
	"github.com/detbus/detbus/internal/demo"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
)

// instruments are the books the random orders go to, each on its ESK
// "orders.<instrument>".
var instruments = []string{"btc-eur", "eth-eur"}

// accounts place the random orders.
var accounts = []string{"a1", "a2", "a3", "a4"}

// lastTrades is how many trades the summary shows.
const lastTrades = 5

// program is the matching demo, which writes --orders random orders and
// waits for the events they cause.
var program = demo.Program{Spec: matching.Spec(), InputNoun: "orders", DefaultInputs: 300, OutputNoun: "events"}

func main() { program.Main(run) }

// run runs the demo; it returns a [demo.UsageError] for a bad command
// line.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	return program.Run(ctx, args, stdout, runMatching)
}

// runMatching writes the orders, works out their events offline, waits
// for the instances to write them, and checks and reports them.
func runMatching(ctx context.Context, s *demo.Setup, stdout io.Writer) error {
	mix, err := writeOrders(ctx, s.Log, s.Options, s.InputsBefore)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d orders (%s) to orders.%s (seed %d)\n", s.Options.Inputs, mix, strings.Join(instruments, ", orders."), s.Options.Seed)

	// The orders as the log holds them, in its total order, fed to a
	// fresh engine: what every instance must write.
	spec := s.Program.Spec
	orders, err := s.ReadInputs(ctx)
	if err != nil {
		return err
	}
	expected, err := replay(spec, orders)
	if err != nil {
		return err
	}
	want := uint64(len(expected))
	fmt.Fprintf(stdout, "offline engine: %d events for %d orders\n", want, len(orders))

	statuses, events, err := s.Settle(ctx, want, "the events of every order", "events written", func(have uint64) error {
		return fmt.Errorf("%s has %d events, the offline engine makes %d", spec.Output, have, want)
	})
	if err != nil {
		return err
	}

	var problems []string
	if uint64(len(events)) != want {
		problems = append(problems, fmt.Sprintf("read back %d events, the offline engine makes %d", len(events), want))
	}
	for i := range min(len(events), len(expected)) {
		if !bytes.Equal(events[i].Data, expected[i]) {
			problems = append(problems, fmt.Sprintf("event %d in the log is %s, the offline engine makes %s", i, events[i].Data, expected[i]))
			if len(problems) >= 5 {
				problems = append(problems, "(and possibly more)")
				break
			}
		}
	}

	counts := map[string]int{}
	var trades []matching.Output
	for _, ev := range events[min(s.OutputsBefore, uint64(len(events))):] {
		var out matching.Output
		if err := ev.Decode(&out); err != nil {
			return fmt.Errorf("event %d: %w", ev.Index, err)
		}
		counts[out.Type]++
		if out.Type == matching.TypeTrade {
			trades = append(trades, out)
		}
	}
	fmt.Fprintf(stdout, "events: %d (acks %d, trades %d, dones %d, cancels %d, rejects %d)\n",
		len(events)-int(min(s.OutputsBefore, uint64(len(events)))), counts[matching.TypeAck], counts[matching.TypeTrade],
		counts[matching.TypeDone], counts[matching.TypeCancelled], counts[matching.TypeReject])
	if len(trades) > 0 {
		shown := trades[max(0, len(trades)-lastTrades):]
		fmt.Fprintf(stdout, "last %d trades:\n", len(shown))
		for _, t := range shown {
			fmt.Fprintf(stdout, "  %s  %3d @ %3d  buy %-6s sell %-6s maker %s\n", t.Instrument, t.Qty, t.Price, t.Buy, t.Sell, t.Maker)
		}
	}
	problems = append(problems, demo.ReportInstances(stdout, statuses, func(st transform.Status) []string {
		var p []string
		if st.Outputs != want {
			p = append(p, fmt.Sprintf("instance %s has %d outputs, the offline engine makes %d", st.Instance, st.Outputs, want))
		}
		if st.Rejections != 0 {
			p = append(p, fmt.Sprintf("instance %s rejected %d inputs", st.Instance, st.Rejections))
		}
		return p
	})...)
	return demo.Verdict(stdout, problems)
}

// writeOrders writes o.Inputs random orders, numbering their ids after
// the existing orders, and describes the mix it wrote.
func writeOrders(ctx context.Context, l *transport.Log, o demo.Options, existing uint64) (string, error) {
	r := rand.New(rand.NewPCG(o.Seed, 0x6d61746368)) // "match"
	// The ids of the limit orders written, by instrument, for cancels.
	placed := map[string][]string{}
	var limits, markets, cancels int
	for i := range uint64(o.Inputs) {
		inst := instruments[r.IntN(len(instruments))]
		id := fmt.Sprintf("o%d", existing+i+1)
		side := [2]string{"buy", "sell"}[r.IntN(2)]
		acct := accounts[r.IntN(len(accounts))]
		var ord matching.Order
		switch x := r.IntN(10); {
		case x < 2 && len(placed[inst]) > 0:
			// Possibly of an order already filled or cancelled: the
			// engine rejects it as not resting.
			ord = matching.Order{Op: matching.OpCancel, ID: placed[inst][r.IntN(len(placed[inst]))]}
			cancels++
		case x < 4:
			ord = matching.Order{Op: matching.OpMarket, ID: id, Side: side, Qty: 1 + r.Int64N(8), Account: acct}
			markets++
		default:
			// Bids from 93 to 102 ticks, asks from 98 to 107: some
			// cross, some rest.
			price := 93 + r.Int64N(10)
			if side == "sell" {
				price += 5
			}
			ord = matching.Order{Op: matching.OpLimit, ID: id, Side: side, Price: price, Qty: 1 + r.Int64N(10), Account: acct}
			placed[inst] = append(placed[inst], id)
			limits++
		}
		if _, err := l.Write(ctx, "orders."+inst, transform.JSON(ord)); err != nil {
			return "", fmt.Errorf("write order %d: %w", i, err)
		}
	}
	return fmt.Sprintf("%d limit, %d market, %d cancel", limits, markets, cancels), nil
}

// replay feeds the orders to a fresh engine in log order and returns the
// events it makes.
func replay(spec transform.Spec, orders []transport.Event) ([][]byte, error) {
	t := spec.New()
	var outs [][]byte
	for _, ev := range orders {
		in := demo.InputOf(ev)
		o, err := t.Step(transform.NewContext(in), in)
		if err != nil {
			return nil, fmt.Errorf("offline engine: order %s#%d: %w", ev.ESK, ev.Index, err)
		}
		outs = append(outs, o...)
	}
	return outs, nil
}
