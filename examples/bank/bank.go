package bank

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"

	strict "github.com/detbus/detbus/transform/fields"

	"github.com/detbus/detbus/transform"
)

// The ops a command may name.
const (
	OpDeposit  = "deposit"
	OpWithdraw = "withdraw"
	OpTransfer = "transfer"
)

// The values of [Decision.Decision].
const (
	Accepted = "accepted"
	Rejected = "rejected"
)

// Spec describes the bank DET: it reads commands from "bank.commands.>"
// and writes decisions to "bank.decisions".
func Spec() transform.Spec {
	return transform.Spec{
		Name:    "bank",
		Version: "1",
		Inputs:  []string{"bank.commands.>"},
		Output:  "bank.decisions",
		New:     func() transform.Transform { return New() },
	}
}

// Command is a command as a client writes it. Fields an op does not use
// are left empty so that they are omitted.
type Command struct {
	Op      string `json:"op"`
	ID      string `json:"id"`
	Account string `json:"account,omitempty"`
	From    string `json:"from,omitempty"`
	To      string `json:"to,omitempty"`
	Amount  int64  `json:"amount"`
}

// Decision is the output for one command.
type Decision struct {
	ID       string           `json:"id,omitempty"`
	Op       string           `json:"op,omitempty"`
	Decision string           `json:"decision"`
	Reason   string           `json:"reason,omitempty"`
	Balances map[string]int64 `json:"balances,omitempty"`
	Input    InputRef         `json:"input"`
}

// InputRef locates the command a decision answers.
type InputRef struct {
	ESK   string `json:"esk"`
	Index uint64 `json:"index"`
}

// Bank is the bank DET. The zero value is not ready; use [New].
type Bank struct {
	accounts map[string]int64
	seen     map[string]struct{}
}

var _ transform.Transform = (*Bank)(nil)

// New returns a bank with no accounts and no ids seen.
func New() *Bank {
	return &Bank{accounts: map[string]int64{}, seen: map[string]struct{}{}}
}

// Balances returns a copy of every account's balance.
func (b *Bank) Balances() map[string]int64 { return maps.Clone(b.accounts) }

// fieldsOf lists, for each op, the fields its commands may carry.
var fieldsOf = map[string][]string{
	OpDeposit:  {"account", "amount", "id", "op"},
	OpWithdraw: {"account", "amount", "id", "op"},
	OpTransfer: {"amount", "from", "id", "op", "to"},
}

// knownFields is every field some op uses.
var knownFields = []string{"account", "amount", "from", "id", "op", "to"}

// Step decides one command and returns its decision. It never returns an
// error; it changes the state only when it accepts a command or records
// the command's id.
func (b *Bank) Step(_ *transform.Context, in transform.Input) ([][]byte, error) {
	d := b.decide(in)
	d.Input = InputRef{ESK: in.ESK, Index: in.Index}
	if d.Reason != "" {
		d.Decision = Rejected
	} else {
		d.Decision = Accepted
	}
	return [][]byte{transform.JSON(d)}, nil
}

// decide validates a command and applies it if it is sound. It returns a
// decision with a Reason for a rejection. Apart from recording the id,
// it changes the state only at the end, once every check has passed.
func (b *Bank) decide(in transform.Input) Decision {
	var d Decision
	if in.ContentType != "" && in.ContentType != "application/json" {
		d.Reason = "content type " + strict.Quote(in.ContentType) + " is not JSON"
		return d
	}
	fields, reason := strict.Parse(in.Data, "command")
	if reason != "" {
		d.Reason = reason
		return d
	}

	// The op is echoed whenever it is a string, even if the command is
	// rejected before the op is checked.
	if op, reason := fields.String("op"); reason == "" {
		d.Op = op
	}
	id, reason := fields.String("id")
	if reason != "" {
		d.Reason = reason
		return d
	}
	d.ID = id
	if _, dup := b.seen[id]; dup {
		d.Reason = "duplicate id"
		return d
	}
	// From here on the id is consumed, whatever the decision.
	b.seen[id] = struct{}{}

	op, reason := fields.String("op")
	if reason != "" {
		d.Reason = reason
		return d
	}
	allowed, ok := fieldsOf[op]
	if !ok {
		d.Reason = "unknown op " + strict.Quote(op)
		return d
	}
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		if !fields.Present(name) || slices.Contains(allowed, name) {
			continue
		}
		if slices.Contains(knownFields, name) {
			d.Reason = "field " + strict.Quote(name) + " does not apply to " + op
		} else {
			d.Reason = "unknown field " + strict.Quote(name)
		}
		return d
	}

	var account, from, to string
	if op == OpTransfer {
		if from, reason = fields.String("from"); reason == "" {
			to, reason = fields.String("to")
		}
	} else {
		account, reason = fields.String("account")
	}
	if reason != "" {
		d.Reason = reason
		return d
	}
	amount, reason := fields.PositiveInt("amount")
	if reason != "" {
		d.Reason = reason
		return d
	}

	switch op {
	case OpDeposit:
		bal := b.accounts[account]
		if bal > math.MaxInt64-amount {
			d.Reason = "balance of " + strict.Quote(account) + " would overflow"
			return d
		}
		b.accounts[account] = bal + amount
		d.Balances = map[string]int64{account: bal + amount}
	case OpWithdraw:
		bal := b.accounts[account]
		if bal < amount {
			d.Reason = insufficient(account, bal, amount)
			return d
		}
		b.accounts[account] = bal - amount
		d.Balances = map[string]int64{account: bal - amount}
	case OpTransfer:
		if from == to {
			d.Reason = "transfer to self"
			return d
		}
		fromBal, toBal := b.accounts[from], b.accounts[to]
		if fromBal < amount {
			d.Reason = insufficient(from, fromBal, amount)
			return d
		}
		if toBal > math.MaxInt64-amount {
			d.Reason = "balance of " + strict.Quote(to) + " would overflow"
			return d
		}
		b.accounts[from] = fromBal - amount
		b.accounts[to] = toBal + amount
		d.Balances = map[string]int64{from: fromBal - amount, to: toBal + amount}
	}
	return d
}

func insufficient(account string, has, needs int64) string {
	return "insufficient funds: " + strict.Quote(account) + " has " +
		strconv.FormatInt(has, 10) + ", needs " + strconv.FormatInt(needs, 10)
}

// snapshot is the encoded state. Pointers tell absent fields from empty
// ones when restoring.
type snapshot struct {
	Accounts *[]snapshotAccount `json:"accounts"`
	Seen     *[]string          `json:"seen"`
}

type snapshotAccount struct {
	Name    *string `json:"name"`
	Balance *int64  `json:"balance"`
}

// Snapshot encodes the state canonically: accounts sorted by name, ids
// sorted.
func (b *Bank) Snapshot() ([]byte, error) {
	accounts := make([]snapshotAccount, 0, len(b.accounts))
	for _, name := range slices.Sorted(maps.Keys(b.accounts)) {
		bal := b.accounts[name]
		accounts = append(accounts, snapshotAccount{Name: &name, Balance: &bal})
	}
	seen := slices.Sorted(maps.Keys(b.seen))
	if seen == nil {
		seen = []string{}
	}
	return json.Marshal(snapshot{Accounts: &accounts, Seen: &seen})
}

// Restore replaces the state with a snapshot made by [Bank.Snapshot]. It
// refuses a malformed snapshot and then leaves the state unchanged.
func (b *Bank) Restore(data []byte) error {
	var s snapshot
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return fmt.Errorf("bank: restore: malformed snapshot: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("bank: restore: malformed snapshot: data after the JSON object")
	}
	if s.Accounts == nil {
		return errors.New(`bank: restore: malformed snapshot: missing "accounts"`)
	}
	if s.Seen == nil {
		return errors.New(`bank: restore: malformed snapshot: missing "seen"`)
	}
	accounts := make(map[string]int64, len(*s.Accounts))
	prev := ""
	for i, a := range *s.Accounts {
		switch {
		case a.Name == nil || *a.Name == "":
			return fmt.Errorf("bank: restore: malformed snapshot: account %d has no name", i)
		case a.Balance == nil:
			return fmt.Errorf("bank: restore: malformed snapshot: account %q has no balance", *a.Name)
		case *a.Balance < 0:
			return fmt.Errorf("bank: restore: malformed snapshot: account %q has negative balance %d", *a.Name, *a.Balance)
		case i > 0 && *a.Name <= prev:
			return fmt.Errorf("bank: restore: malformed snapshot: account %q is out of order or repeated", *a.Name)
		}
		prev = *a.Name
		accounts[*a.Name] = *a.Balance
	}
	seen := make(map[string]struct{}, len(*s.Seen))
	for i, id := range *s.Seen {
		switch {
		case id == "":
			return fmt.Errorf("bank: restore: malformed snapshot: seen id %d is empty", i)
		case i > 0 && id <= (*s.Seen)[i-1]:
			return fmt.Errorf("bank: restore: malformed snapshot: seen id %q is out of order or repeated", id)
		}
		seen[id] = struct{}{}
	}
	b.accounts, b.seen = accounts, seen
	return nil
}
