// The bank demo runs several identical instances of the bank DET (package
// bank) against one log, feeds them random commands, and checks that the
// instances agree.
//
// Each instance is a [transform.Runner] of bank.Spec() with its own NATS
// connection. There is no leader: every instance reads the commands in the
// log's total order, decides each one, and appends the decision to
// "bank.decisions" with existsOrWrite at its index. The fastest instance
// writes it (won); the others find it written and equal to their own
// (lost). The demo writes random deposits, withdrawals and transfers over
// five accounts to "bank.commands.<account>" (transfers go to the paying
// account's ESK), waits until every command has its decision, and prints
// how many were accepted and rejected, the final balances, and how many
// decisions each instance won and lost.
//
// It then checks that the replicas agree: every instance has as many
// outputs as there are commands and found no divergence, the decisions in
// the log are byte for byte those of a fresh bank.New() fed the same
// commands offline in log order, and the balances folded from the accepted
// decisions (their "balances" field) equal that bank's balances. It prints
// "replicas agree: yes", or exits with status 1 and says what differs.
//
// Run it with an embedded node, kept in a temporary directory that is
// removed at exit:
//
//	go run ./examples/bank/demo
//	go run ./examples/bank/demo --instances 5 --commands 1000 --seed 7
//
// or against a running node (started with `go run ./cmd/detbus serve`, say):
//
//	go run ./examples/bank/demo --nats nats://127.0.0.1:4222
//
// With --nats the demo appends to the node's existing log (stream EVENTS,
// prefix "events"): command ids continue after the commands already on
// "bank.commands.>", the instances replay the whole log from its start
// (they keep no snapshots), and the checks cover the whole log, while the
// accepted and rejected counts cover the decisions written since the run
// started. Other instances of the bank DET (`detbus worker bank`) may run
// meanwhile; other writers of bank commands may not, since the demo waits
// for as many decisions as there are commands.
//
// Usage errors exit with status 2.
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"

	"github.com/detbus/detbus/examples/bank"
	"github.com/detbus/detbus/internal/demo"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
)

// accounts are the accounts the random commands use.
var accounts = []string{"alice", "bob", "carol", "dave", "erin"}

// program is the bank demo, which writes --commands random commands and
// waits for their decisions.
var program = demo.Program{Spec: bank.Spec(), InputNoun: "commands", DefaultInputs: 200, OutputNoun: "decisions"}

func main() { program.Main(run) }

// run runs the demo; it returns a [demo.UsageError] for a bad command
// line.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	return program.Run(ctx, args, stdout, runBank)
}

// runBank writes the commands, waits for their decisions, and checks
// and reports them.
func runBank(ctx context.Context, s *demo.Setup, stdout io.Writer) error {
	if err := writeCommands(ctx, s.Log, s.Options, s.InputsBefore); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d commands over %d accounts to bank.commands.<account> (seed %d)\n", s.Options.Inputs, len(accounts), s.Options.Seed)

	total, err := s.CountInputs(ctx)
	if err != nil {
		return err
	}
	statuses, decisions, err := s.Settle(ctx, total, "every command to have its decision", "commands decided", func(have uint64) error {
		return fmt.Errorf("%s has %d decisions for %d commands", s.Program.Spec.Output, have, total)
	})
	if err != nil {
		return err
	}

	commands, err := s.ReadInputs(ctx)
	if err != nil {
		return err
	}
	var problems []string
	offline, mismatch, err := replay(commands, decisions)
	if err != nil {
		return err
	}
	problems = append(problems, mismatch...)
	folded, err := foldBalances(decisions)
	if err != nil {
		return err
	}
	if !maps.Equal(folded, offline) {
		problems = append(problems, fmt.Sprintf("balances folded from the decisions %v differ from the offline bank's %v", folded, offline))
	}

	accepted, rejected := 0, 0
	for _, ev := range decisions[min(s.OutputsBefore, uint64(len(decisions))):] {
		var d bank.Decision
		if err := ev.Decode(&d); err != nil {
			return fmt.Errorf("decision %d: %w", ev.Index, err)
		}
		if d.Decision == bank.Accepted {
			accepted++
		} else {
			rejected++
		}
	}
	fmt.Fprintf(stdout, "decisions: %d (accepted %d, rejected %d)\n", accepted+rejected, accepted, rejected)
	fmt.Fprintln(stdout, "final balances:")
	for _, name := range slices.Sorted(maps.Keys(folded)) {
		fmt.Fprintf(stdout, "  %-8s %8d\n", name, folded[name])
	}
	problems = append(problems, demo.ReportInstances(stdout, statuses, func(st transform.Status) []string {
		if st.Outputs != total {
			return []string{fmt.Sprintf("instance %s has %d outputs for %d commands", st.Instance, st.Outputs, total)}
		}
		return nil
	})...)
	if uint64(len(commands)) != total || uint64(len(decisions)) != total {
		problems = append(problems, fmt.Sprintf("read back %d commands and %d decisions, want %d of each", len(commands), len(decisions), total))
	}
	return demo.Verdict(stdout, problems)
}

// writeCommands writes o.Inputs random commands, numbering their ids
// after the first existing commands.
func writeCommands(ctx context.Context, l *transport.Log, o demo.Options, existing uint64) error {
	r := rand.New(rand.NewPCG(o.Seed, 0x62616e6b)) // "bank"
	for i := range uint64(o.Inputs) {
		c := bank.Command{ID: fmt.Sprintf("c%d", existing+i+1)}
		pick := func() string { return accounts[r.IntN(len(accounts))] }
		switch x := r.IntN(10); {
		case x < 4:
			c.Op, c.Account, c.Amount = bank.OpDeposit, pick(), 1+r.Int64N(100)
		case x < 7:
			c.Op, c.Account, c.Amount = bank.OpWithdraw, pick(), 1+r.Int64N(150)
		default: // "to" may equal "from": the bank rejects a transfer to self
			c.Op, c.From, c.To, c.Amount = bank.OpTransfer, pick(), pick(), 1+r.Int64N(120)
		}
		esk := "bank.commands." + c.Account + c.From
		if _, err := l.Write(ctx, esk, transform.JSON(c)); err != nil {
			return fmt.Errorf("write command %s: %w", c.ID, err)
		}
	}
	return nil
}

// replay feeds the commands to a fresh bank in log order, compares its
// decisions with the ones in the log, and returns its final balances and
// the differences found.
func replay(commands, decisions []transport.Event) (map[string]int64, []string, error) {
	b := bank.New()
	var problems []string
	for i, ev := range commands {
		in := demo.InputOf(ev)
		outs, err := b.Step(transform.NewContext(in), in)
		if err != nil {
			return nil, nil, fmt.Errorf("offline bank: command %s#%d: %w", ev.ESK, ev.Index, err)
		}
		if len(outs) != 1 {
			return nil, nil, fmt.Errorf("offline bank: command %s#%d: %d decisions, want 1", ev.ESK, ev.Index, len(outs))
		}
		switch {
		case i >= len(decisions):
			problems = append(problems, fmt.Sprintf("command %s#%d has no decision in the log", ev.ESK, ev.Index))
		case !bytes.Equal(outs[0], decisions[i].Data):
			problems = append(problems, fmt.Sprintf("decision %d in the log is %s, the offline bank decides %s", i, decisions[i].Data, outs[0]))
		}
		if len(problems) >= 5 {
			problems = append(problems, "(and possibly more)")
			break
		}
	}
	return b.Balances(), problems, nil
}

// foldBalances applies the balances reported by the accepted decisions.
func foldBalances(decisions []transport.Event) (map[string]int64, error) {
	balances := map[string]int64{}
	for _, ev := range decisions {
		var d bank.Decision
		if err := ev.Decode(&d); err != nil {
			return nil, fmt.Errorf("decision %d: %w", ev.Index, err)
		}
		if d.Decision == bank.Accepted {
			maps.Copy(balances, d.Balances)
		}
	}
	return balances, nil
}
