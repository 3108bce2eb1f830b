package bank_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/detbus/detbus/examples/bank"
	"github.com/detbus/detbus/transform"
)

const esk = "bank.commands.x"

// step feeds one command to b as the i-th input and returns its single
// output.
func step(t *testing.T, b *bank.Bank, i int, data string) string {
	t.Helper()
	in := transform.Input{ESK: esk, Index: uint64(i), Seq: uint64(i + 1), Data: []byte(data)}
	outs, err := b.Step(transform.NewContext(in), in)
	if err != nil {
		t.Fatalf("step %d %s: error %v", i, data, err)
	}
	if len(outs) != 1 {
		t.Fatalf("step %d %s: %d outputs, want 1", i, data, len(outs))
	}
	return string(outs[0])
}

// withInput appends the "input" field for the i-th input to a decision
// written without it.
func withInput(want string, i int) string {
	return fmt.Sprintf(`%s,"input":{"esk":%q,"index":%d}}`, strings.TrimSuffix(want, "}"), esk, i)
}

func snap(t *testing.T, b *bank.Bank) string {
	t.Helper()
	s, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return string(s)
}

func TestDecisions(t *testing.T) {
	type entry struct{ cmd, want string }
	const (
		dep100 = `{"op":"deposit","id":"c1","account":"alice","amount":100}`
		ok100  = `{"id":"c1","op":"deposit","decision":"accepted","balances":{"alice":100}}`
	)
	rej := func(id, op, reason string) string {
		d := `{`
		if id != "" {
			d += `"id":"` + id + `",`
		}
		if op != "" {
			d += `"op":"` + op + `",`
		}
		return d + `"decision":"rejected","reason":` + string(transform.JSON(reason)) + `}`
	}
	cases := []struct {
		name  string
		steps []entry
	}{
		{"deposit", []entry{
			{dep100, ok100},
			{`{"op":"deposit","id":"c2","account":"alice","amount":50}`, `{"id":"c2","op":"deposit","decision":"accepted","balances":{"alice":150}}`},
			{`{"amount":7,"account":"bob","id":"c3","op":"deposit"}`, `{"id":"c3","op":"deposit","decision":"accepted","balances":{"bob":7}}`},
		}},
		{"withdraw", []entry{
			{dep100, ok100},
			{`{"op":"withdraw","id":"c2","account":"alice","amount":30}`, `{"id":"c2","op":"withdraw","decision":"accepted","balances":{"alice":70}}`},
			{`{"op":"withdraw","id":"c3","account":"alice","amount":70}`, `{"id":"c3","op":"withdraw","decision":"accepted","balances":{"alice":0}}`},
		}},
		{"overdraft", []entry{
			{dep100, ok100},
			{`{"op":"withdraw","id":"c2","account":"alice","amount":101}`, rej("c2", "withdraw", `insufficient funds: "alice" has 100, needs 101`)},
			{`{"op":"withdraw","id":"c3","account":"bob","amount":1}`, rej("c3", "withdraw", `insufficient funds: "bob" has 0, needs 1`)},
			{`{"op":"withdraw","id":"c4","account":"alice","amount":100}`, `{"id":"c4","op":"withdraw","decision":"accepted","balances":{"alice":0}}`},
		}},
		{"transfer", []entry{
			{dep100, ok100},
			{`{"op":"transfer","id":"c2","from":"alice","to":"bob","amount":40}`, `{"id":"c2","op":"transfer","decision":"accepted","balances":{"alice":60,"bob":40}}`},
			{`{"op":"transfer","id":"c3","from":"bob","to":"alice","amount":40}`, `{"id":"c3","op":"transfer","decision":"accepted","balances":{"alice":100,"bob":0}}`},
		}},
		{"transfer overdraft", []entry{
			{dep100, ok100},
			{`{"op":"transfer","id":"c2","from":"alice","to":"bob","amount":101}`, rej("c2", "transfer", `insufficient funds: "alice" has 100, needs 101`)},
			{`{"op":"transfer","id":"c3","from":"carol","to":"alice","amount":1}`, rej("c3", "transfer", `insufficient funds: "carol" has 0, needs 1`)},
			{`{"op":"transfer","id":"c4","from":"alice","to":"alice","amount":1}`, rej("c4", "transfer", "transfer to self")},
			{`{"op":"transfer","id":"c5","from":"alice","to":"bob","amount":100}`, `{"id":"c5","op":"transfer","decision":"accepted","balances":{"alice":0,"bob":100}}`},
		}},
		{"duplicate id", []entry{
			{dep100, ok100},
			{dep100, rej("c1", "deposit", "duplicate id")},
			{`{"op":"withdraw","id":"c1","account":"alice","amount":1}`, rej("c1", "withdraw", "duplicate id")},
			{`{"op":"withdraw","id":"c2","account":"alice","amount":500}`, rej("c2", "withdraw", `insufficient funds: "alice" has 100, needs 500`)},
			{`{"op":"deposit","id":"c2","account":"alice","amount":500}`, rej("c2", "deposit", "duplicate id")},
			{`{"op":"pay","id":"c3"}`, rej("c3", "pay", `unknown op "pay"`)},
			{`{"op":"pay","id":"c3"}`, rej("c3", "pay", "duplicate id")},
			{`{"id":"c3"}`, rej("c3", "", "duplicate id")},
			{`{"op":"withdraw","id":"c4","account":"alice","amount":100}`, `{"id":"c4","op":"withdraw","decision":"accepted","balances":{"alice":0}}`},
		}},
		{"bad amounts", []entry{
			{`{"op":"deposit","id":"c1","account":"alice","amount":0}`, rej("c1", "deposit", "amount must be positive")},
			{`{"op":"deposit","id":"c2","account":"alice","amount":-5}`, rej("c2", "deposit", "amount must be positive")},
			{`{"op":"deposit","id":"c3","account":"alice","amount":-0}`, rej("c3", "deposit", "amount must be positive")},
			{`{"op":"deposit","id":"c4","account":"alice","amount":1.5}`, rej("c4", "deposit", "amount must be an integer")},
			{`{"op":"deposit","id":"c5","account":"alice","amount":100.0}`, rej("c5", "deposit", "amount must be an integer")},
			{`{"op":"deposit","id":"c6","account":"alice","amount":1e2}`, rej("c6", "deposit", "amount must be an integer")},
			{`{"op":"deposit","id":"c7","account":"alice","amount":"100"}`, rej("c7", "deposit", "amount must be an integer")},
			{`{"op":"deposit","id":"c8","account":"alice","amount":true}`, rej("c8", "deposit", "amount must be an integer")},
			{`{"op":"deposit","id":"c9","account":"alice"}`, rej("c9", "deposit", "missing amount")},
			{`{"op":"deposit","id":"c10","account":"alice","amount":null}`, rej("c10", "deposit", "missing amount")},
			{`{"op":"withdraw","id":"c11","account":"alice","amount":-1}`, rej("c11", "withdraw", "amount must be positive")},
			{`{"op":"transfer","id":"c12","from":"a","to":"b","amount":0}`, rej("c12", "transfer", "amount must be positive")},
		}},
		{"malformed JSON", []entry{
			{``, rej("", "", "malformed JSON")},
			{`{`, rej("", "", "malformed JSON")},
			{`not json`, rej("", "", "malformed JSON")},
			{`{"op":"deposit","id":"c1",}`, rej("", "", "malformed JSON")},
			{`{"op":"deposit"} {}`, rej("", "", "malformed JSON")},
			{`[1,2]`, rej("", "", "command must be a JSON object")},
			{`"deposit"`, rej("", "", "command must be a JSON object")},
			{`null`, rej("", "", "command must be a JSON object")},
			{`{"op":"deposit","id":"c1","account":"a","amount":1,"amount":1000}`, rej("", "", `duplicate field "amount"`)},
			// None of the above consumed c1.
			{dep100, ok100},
		}},
		{"missing and wrong fields", []entry{
			{`{"op":"deposit","account":"alice","amount":1}`, rej("", "deposit", "missing id")},
			{`{"op":"deposit","id":7,"account":"alice","amount":1}`, rej("", "deposit", "id must be a string")},
			{`{"op":"deposit","id":"","account":"alice","amount":1}`, rej("", "deposit", "id must not be empty")},
			{`{"id":"c1","account":"alice","amount":1}`, rej("c1", "", "missing op")},
			{`{"id":"c2","op":["deposit"]}`, rej("c2", "", "op must be a string")},
			{`{"op":"deposit","id":"c3","amount":1}`, rej("c3", "deposit", "missing account")},
			{`{"op":"deposit","id":"c4","account":"","amount":1}`, rej("c4", "deposit", "account must not be empty")},
			{`{"op":"deposit","id":"c5","account":{},"amount":1}`, rej("c5", "deposit", "account must be a string")},
			{`{"op":"transfer","id":"c6","to":"bob","amount":1}`, rej("c6", "transfer", "missing from")},
			{`{"op":"transfer","id":"c7","from":"alice","amount":1}`, rej("c7", "transfer", "missing to")},
			{`{"op":"transfer","id":"c8","account":"alice","to":"bob","amount":1}`, rej("c8", "transfer", `field "account" does not apply to transfer`)},
			{`{"op":"deposit","id":"c9","account":"alice","to":"bob","amount":1}`, rej("c9", "deposit", `field "to" does not apply to deposit`)},
			{`{"op":"deposit","id":"c10","account":"alice","amount":1,"memo":"hi"}`, rej("c10", "deposit", `unknown field "memo"`)},
			{`{"op":"deposit","id":"c11","account":"alice","Amount":1}`, rej("c11", "deposit", `unknown field "Amount"`)},
			{`{"op":"deposit","id":"c12","account":"alice","amount":1,"to":null}`, `{"id":"c12","op":"deposit","decision":"accepted","balances":{"alice":1}}`},
		}},
		{"unknown op", []entry{
			{`{"op":"pay","id":"c1","account":"alice","amount":1}`, rej("c1", "pay", `unknown op "pay"`)},
			{`{"op":"Deposit","id":"c2","account":"alice","amount":1}`, rej("c2", "Deposit", `unknown op "Deposit"`)},
			{`{"op":"","id":"c3","account":"alice","amount":1}`, rej("c3", "", `op must not be empty`)},
		}},
		{"overflow", []entry{
			{`{"op":"deposit","id":"c1","account":"alice","amount":9223372036854775807}`, `{"id":"c1","op":"deposit","decision":"accepted","balances":{"alice":9223372036854775807}}`},
			{`{"op":"deposit","id":"c2","account":"alice","amount":1}`, rej("c2", "deposit", `balance of "alice" would overflow`)},
			{`{"op":"deposit","id":"c3","account":"bob","amount":9223372036854775808}`, rej("c3", "deposit", "amount out of range")},
			{`{"op":"deposit","id":"c4","account":"bob","amount":-9223372036854775809}`, rej("c4", "deposit", "amount out of range")},
			{`{"op":"deposit","id":"c5","account":"bob","amount":10}`, `{"id":"c5","op":"deposit","decision":"accepted","balances":{"bob":10}}`},
			{`{"op":"transfer","id":"c6","from":"bob","to":"alice","amount":1}`, rej("c6", "transfer", `balance of "alice" would overflow`)},
			{`{"op":"withdraw","id":"c7","account":"alice","amount":9223372036854775807}`, `{"id":"c7","op":"withdraw","decision":"accepted","balances":{"alice":0}}`},
			{`{"op":"transfer","id":"c8","from":"bob","to":"alice","amount":10}`, `{"id":"c8","op":"transfer","decision":"accepted","balances":{"alice":10,"bob":0}}`},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := bank.New()
			for i, s := range tc.steps {
				if got, want := step(t, b, i, s.cmd), withInput(s.want, i); got != want {
					t.Errorf("step %d %s:\n got %s\nwant %s", i, s.cmd, got, want)
				}
			}
			for name, bal := range b.Balances() {
				if bal < 0 {
					t.Errorf("balance of %s is %d", name, bal)
				}
			}
		})
	}
}

func TestContentType(t *testing.T) {
	b := bank.New()
	for i, ct := range []string{"text/plain", "application/json", ""} {
		in := transform.Input{ESK: esk, Index: uint64(i), Seq: uint64(i + 1), ContentType: ct,
			Data: fmt.Appendf(nil, `{"op":"deposit","id":"c%d","account":"a","amount":1}`, i)}
		outs, err := b.Step(transform.NewContext(in), in)
		if err != nil || len(outs) != 1 {
			t.Fatalf("%q: %d outputs, error %v", ct, len(outs), err)
		}
		var d bank.Decision
		if err := json.Unmarshal(outs[0], &d); err != nil {
			t.Fatal(err)
		}
		want := bank.Accepted
		if ct == "text/plain" {
			want = bank.Rejected
			if d.Reason != `content type "text/plain" is not JSON` {
				t.Errorf("reason %q", d.Reason)
			}
		}
		if d.Decision != want || d.Input != (bank.InputRef{ESK: esk, Index: uint64(i)}) {
			t.Errorf("%q: decision %+v, want %s", ct, d, want)
		}
	}
}

func TestSpec(t *testing.T) {
	s := bank.Spec()
	if s.Name != "bank" || s.Version != "1" || len(s.Inputs) != 1 || s.Inputs[0] != "bank.commands.>" || s.Output != "bank.decisions" {
		t.Fatalf("spec %+v", s)
	}
	b1, ok1 := s.New().(*bank.Bank)
	b2, ok2 := s.New().(*bank.Bank)
	if !ok1 || !ok2 || b1 == b2 {
		t.Fatalf("New returns %T, %T, distinct %v", b1, b2, b1 != b2)
	}
	step(t, b1, 0, `{"op":"deposit","id":"c1","account":"a","amount":1}`)
	if len(b2.Balances()) != 0 {
		t.Fatal("instances share state")
	}
}

func TestBalancesIsACopy(t *testing.T) {
	b := bank.New()
	step(t, b, 0, `{"op":"deposit","id":"c1","account":"a","amount":5}`)
	m := b.Balances()
	m["a"] = 1000
	m["z"] = 1
	if got := b.Balances(); !maps.Equal(got, map[string]int64{"a": 5}) {
		t.Fatalf("balances %v after changing the copy", got)
	}
}

func TestSnapshotCanonical(t *testing.T) {
	b := bank.New()
	if got, want := snap(t, b), `{"accounts":[],"seen":[]}`; got != want {
		t.Fatalf("empty snapshot %s, want %s", got, want)
	}
	for i, c := range []string{
		`{"op":"deposit","id":"c3","account":"zed","amount":70}`,
		`{"op":"transfer","id":"c1","from":"zed","to":"alice","amount":50}`,
		`{"op":"withdraw","id":"c2","account":"alice","amount":30}`,
		`{"op":"withdraw","id":"c0","account":"bob","amount":30}`, // rejected, still seen
	} {
		step(t, b, i, c)
	}
	want := `{"accounts":[{"name":"alice","balance":20},{"name":"zed","balance":20}],"seen":["c0","c1","c2","c3"]}`
	if got := snap(t, b); got != want {
		t.Fatalf("snapshot\n got %s\nwant %s", got, want)
	}
	r := bank.New()
	if err := r.Restore([]byte(want)); err != nil {
		t.Fatal(err)
	}
	if got := snap(t, r); got != want {
		t.Fatalf("restored snapshot %s", got)
	}
	if !maps.Equal(r.Balances(), b.Balances()) {
		t.Fatalf("restored balances %v, want %v", r.Balances(), b.Balances())
	}
	// The restored instance remembers ids.
	if got := step(t, r, 4, `{"op":"deposit","id":"c2","account":"a","amount":1}`); !strings.Contains(got, `"duplicate id"`) {
		t.Fatalf("after restore: %s", got)
	}
}

func TestRestoreRejectsMalformed(t *testing.T) {
	acct := func(s string) string { return `{"accounts":[` + s + `],"seen":[]}` }
	seen := func(s string) string { return `{"accounts":[],"seen":[` + s + `]}` }
	for _, bad := range []string{
		``, `{`, `[]`, `null`, `"x"`, `{}`,
		`{"accounts":[]}`, `{"seen":[]}`, `{"accounts":null,"seen":[]}`, `{"accounts":[],"seen":null}`,
		`{"accounts":[],"seen":[],"extra":1}`,
		`{"accounts":[],"seen":[]} {}`, `{"accounts":[],"seen":[]}x`,
		acct(`{"name":"a"}`), acct(`{"balance":1}`), acct(`{"name":"","balance":1}`),
		acct(`{"name":"a","balance":-1}`), acct(`{"name":"a","balance":1.5}`), acct(`{"name":"a","balance":"1"}`),
		acct(`{"name":"a","balance":9223372036854775808}`), acct(`{"name":"a","balance":1,"x":0}`),
		acct(`{"name":"b","balance":1},{"name":"a","balance":1}`), acct(`{"name":"a","balance":1},{"name":"a","balance":2}`),
		seen(`""`), seen(`"b","a"`), seen(`"a","a"`), seen(`1`),
	} {
		b := bank.New()
		step(t, b, 0, `{"op":"deposit","id":"c1","account":"a","amount":5}`)
		before := snap(t, b)
		err := b.Restore([]byte(bad))
		if err == nil || !strings.Contains(err.Error(), "malformed snapshot") {
			t.Errorf("Restore(%s): error %v, want a malformed snapshot error", bad, err)
		}
		if after := snap(t, b); after != before {
			t.Errorf("Restore(%s) changed the state to %s", bad, after)
		}
	}
	// Whitespace is not a fault.
	if err := bank.New().Restore([]byte(" {\"accounts\": [ {\"name\":\"a\",\"balance\":0} ], \"seen\": [\"x\"]}\n")); err != nil {
		t.Fatal(err)
	}
}

// TestDecisionsRoundTrip checks that decisions decode into [bank.Decision]
// and re-encode to the same bytes.
func TestDecisionsRoundTrip(t *testing.T) {
	b := bank.New()
	for i, c := range []string{
		`{"op":"deposit","id":"c1","account":"alice","amount":100}`,
		`{"op":"transfer","id":"c2","from":"alice","to":"bob","amount":50}`,
		`{"op":"withdraw","id":"c3","account":"bob","amount":80}`,
		`{`,
	} {
		out := step(t, b, i, c)
		var d bank.Decision
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatal(err)
		}
		if again := transform.JSON(d); !bytes.Equal(again, []byte(out)) {
			t.Errorf("re-encoded %s, want %s", again, out)
		}
	}
}
