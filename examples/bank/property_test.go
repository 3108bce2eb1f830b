package bank_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/detbus/detbus/examples/bank"
	"github.com/detbus/detbus/transform"
)

// genCommand is a generated input and what a model needs to predict its
// decision.
type genCommand struct {
	data      []byte
	cmd       bank.Command
	parseable bool // the command is a JSON object with a usable id
	sound     bool // the op is known and the amount positive
}

// generate makes n commands over accounts: mostly sound deposits,
// withdrawals and transfers (some overdrawing, some to self), and a share
// of repeated ids, bad amounts, malformed JSON and unknown ops.
func generate(rng *rand.Rand, n int, accounts []string) []genCommand {
	cmds := make([]genCommand, n)
	acct := func() string { return accounts[rng.IntN(len(accounts))] }
	for i := range cmds {
		c := bank.Command{ID: fmt.Sprintf("c%d", i), Amount: 1 + rng.Int64N(1000)}
		g := genCommand{parseable: true, sound: true}
		switch r := rng.IntN(100); {
		case r < 35:
			c.Op, c.Account = bank.OpDeposit, acct()
		case r < 60:
			c.Op, c.Account, c.Amount = bank.OpWithdraw, acct(), 1+rng.Int64N(1500)
		case r < 88:
			c.Op, c.From, c.To, c.Amount = bank.OpTransfer, acct(), acct(), 1+rng.Int64N(1500)
		case r < 92 && i > 0:
			c.Op, c.Account, c.ID = bank.OpDeposit, acct(), fmt.Sprintf("c%d", rng.IntN(i))
		case r < 95:
			c.Op, c.Account, c.Amount = bank.OpDeposit, acct(), -rng.Int64N(10)
			g.sound = false
		case r < 97:
			g.data = []byte(fmt.Sprintf(`{"op":"deposit","id":%q,"account":`, c.ID))
			g.parseable, g.sound = false, false
		default:
			c.Op, c.Account = "refund", acct()
			g.sound = false
		}
		if g.data == nil {
			g.data = transform.JSON(c)
		}
		g.cmd = c
		cmds[i] = g
	}
	return cmds
}

// model predicts a decision from first principles and applies it.
type model struct {
	balances map[string]int64
	seen     map[string]bool
}

func (m *model) apply(g genCommand) bool {
	c := g.cmd
	if !g.parseable || m.seen[c.ID] {
		return false
	}
	m.seen[c.ID] = true
	if !g.sound {
		return false
	}
	switch c.Op {
	case bank.OpDeposit:
		m.balances[c.Account] += c.Amount
	case bank.OpWithdraw:
		if m.balances[c.Account] < c.Amount {
			return false
		}
		m.balances[c.Account] -= c.Amount
	case bank.OpTransfer:
		if c.From == c.To || m.balances[c.From] < c.Amount {
			return false
		}
		m.balances[c.From] -= c.Amount
		m.balances[c.To] += c.Amount
	}
	return true
}

func run(t *testing.T, b *bank.Bank, i int, g genCommand) []byte {
	t.Helper()
	in := transform.Input{ESK: esk, Index: uint64(i), Seq: uint64(i + 1), Data: g.data}
	outs, err := b.Step(transform.NewContext(in), in)
	if err != nil || len(outs) != 1 {
		t.Fatalf("step %d %s: %d outputs, error %v", i, g.data, len(outs), err)
	}
	return outs[0]
}

func mustSnapshot(t *testing.T, b *bank.Bank) []byte {
	t.Helper()
	s, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestProperties(t *testing.T) {
	const n = 10_000
	rng := rand.New(rand.NewPCG(0x5eed, 0xba7c))
	accounts := make([]string, 20)
	for i := range accounts {
		accounts[i] = fmt.Sprintf("acct%02d", i)
	}
	cmds := generate(rng, n, accounts)
	mid := 1 + rng.IntN(n-1)

	a, b := bank.New(), bank.New()
	m := &model{balances: map[string]int64{}, seen: map[string]bool{}}
	outs := make([][]byte, n)
	var total int64 // deposits minus withdrawals accepted so far
	var midSnap []byte
	accepted, reasons := map[string]int{}, map[string]int{}
	for i, g := range cmds {
		if i == mid {
			midSnap = mustSnapshot(t, a)
			if sb := mustSnapshot(t, b); !bytes.Equal(midSnap, sb) {
				t.Fatalf("snapshots differ at %d:\n%s\n%s", i, midSnap, sb)
			}
		}
		outs[i] = run(t, a, i, g)
		if ob := run(t, b, i, g); !bytes.Equal(outs[i], ob) {
			t.Fatalf("step %d: outputs differ:\n%s\n%s", i, outs[i], ob)
		}

		var d bank.Decision
		if err := json.Unmarshal(outs[i], &d); err != nil {
			t.Fatalf("step %d: decision %s: %v", i, outs[i], err)
		}
		want := m.apply(g)
		if got := d.Decision == bank.Accepted; got != want {
			t.Fatalf("step %d %s: decision %s, model says accepted=%v", i, g.data, outs[i], want)
		}
		if d.Input != (bank.InputRef{ESK: esk, Index: uint64(i)}) {
			t.Fatalf("step %d: input %+v", i, d.Input)
		}
		if kind, _, _ := strings.Cut(d.Reason, ":"); !want {
			reasons[kind]++
		} else {
			accepted[d.Op]++
			switch d.Op {
			case bank.OpDeposit:
				total += g.cmd.Amount
			case bank.OpWithdraw:
				total -= g.cmd.Amount
			}
		}

		bals := a.Balances()
		var sum int64
		for name, bal := range bals {
			if bal < 0 {
				t.Fatalf("step %d: balance of %s is %d", i, name, bal)
			}
			sum += bal
		}
		if sum != total {
			t.Fatalf("step %d: money is %d, accepted deposits minus withdrawals %d", i, sum, total)
		}
		if !maps.Equal(bals, m.balances) {
			t.Fatalf("step %d: balances %v, model %v", i, bals, m.balances)
		}
		for name, bal := range d.Balances {
			if bals[name] != bal {
				t.Fatalf("step %d: decision says %s has %d, bank says %d", i, name, bal, bals[name])
			}
		}
	}
	// The run must exercise every kind of outcome to mean something.
	for _, op := range []string{bank.OpDeposit, bank.OpWithdraw, bank.OpTransfer} {
		if accepted[op] < 500 {
			t.Errorf("only %d %s accepted", accepted[op], op)
		}
	}
	for _, r := range []string{"insufficient funds", "transfer to self", "duplicate id", "amount must be positive", "malformed JSON", `unknown op "refund"`} {
		if reasons[r] < 50 {
			t.Errorf("only %d rejections for %q", reasons[r], r)
		}
	}

	// Restore the midpoint snapshot into a fresh instance and go on from
	// there: same outputs, same final state.
	c := bank.Spec().New().(*bank.Bank)
	if err := c.Restore(midSnap); err != nil {
		t.Fatal(err)
	}
	if s := mustSnapshot(t, c); !bytes.Equal(s, midSnap) {
		t.Fatalf("restored snapshot differs:\n%s\n%s", s, midSnap)
	}
	for i := mid; i < n; i++ {
		if out := run(t, c, i, cmds[i]); !bytes.Equal(out, outs[i]) {
			t.Fatalf("step %d after restore at %d: output\n%s\nwant\n%s", i, mid, out, outs[i])
		}
	}
	sa, sb, sc := mustSnapshot(t, a), mustSnapshot(t, b), mustSnapshot(t, c)
	if !bytes.Equal(sa, sb) || !bytes.Equal(sa, sc) {
		t.Fatalf("final snapshots differ (restored at %d)", mid)
	}
	if !maps.Equal(a.Balances(), c.Balances()) || !maps.Equal(a.Balances(), b.Balances()) {
		t.Fatalf("final balances differ: %v, %v, %v", a.Balances(), b.Balances(), c.Balances())
	}
	t.Logf("%d commands, restored at %d: accepted %v, rejected %v, final money %d", n, mid, accepted, reasons, total)
}
