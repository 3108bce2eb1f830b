package matching

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/detbus/detbus/transform"
)

// genInputs makes n random inputs over the instruments: mostly limit
// orders around a common price, with market orders, cancels of known and
// unknown ids, duplicate ids and malformed payloads mixed in.
func genInputs(rng *rand.Rand, n int, instruments []string) []transform.Input {
	index := map[string]uint64{}
	ids := map[string][]string{}
	malformed := []string{
		`{"op":"limit"`, `[]`, `{"op":"limit","id":"x1","side":"buy","price":1.5,"qty":1,"account":"a"}`,
		`{"op":"market","id":"x2","side":"up","qty":1,"account":"a"}`, `{"op":"cancel"}`, `{"op":"fill","id":"x3"}`,
	}
	var ins []transform.Input
	for i := range n {
		inst := instruments[rng.IntN(len(instruments))]
		esk := "orders." + inst
		sideName := [2]string{"buy", "sell"}[rng.IntN(2)]
		account := fmt.Sprintf("a%d", rng.IntN(5))
		var data []byte
		switch r := rng.IntN(100); {
		case r < 50:
			id := fmt.Sprintf("o%d", i)
			ids[inst] = append(ids[inst], id)
			// Bids span 90..104 and asks 96..110: books build depth, and
			// incoming orders often sweep several levels.
			price := int64(90 + rng.IntN(15))
			if sideName == "sell" {
				price += 6
			}
			data = transform.JSON(Order{Op: OpLimit, ID: id, Side: sideName, Price: price, Qty: int64(1 + rng.IntN(20)), Account: account})
		case r < 62:
			id := fmt.Sprintf("o%d", i)
			ids[inst] = append(ids[inst], id)
			data = transform.JSON(Order{Op: OpMarket, ID: id, Side: sideName, Qty: int64(1 + rng.IntN(30)), Account: account})
		case r < 84:
			id := fmt.Sprintf("unknown%d", i)
			if known := ids[inst]; len(known) > 0 && rng.IntN(10) > 0 {
				id = known[rng.IntN(len(known))]
			}
			data = transform.JSON(Order{Op: OpCancel, ID: id})
		case r < 92 && len(ids[inst]) > 0:
			id := ids[inst][rng.IntN(len(ids[inst]))]
			data = transform.JSON(Order{Op: OpLimit, ID: id, Side: sideName, Price: 100, Qty: 1, Account: account})
		default:
			data = []byte(malformed[rng.IntN(len(malformed))])
		}
		ins = append(ins, transform.Input{ESK: esk, Index: index[esk], Seq: uint64(i + 1), Data: data})
		index[esk]++
	}
	return ins
}

func stepOK(t *testing.T, e *Engine, in transform.Input) [][]byte {
	t.Helper()
	outs, err := e.Step(transform.NewContext(in), in)
	if err != nil {
		t.Fatalf("input %s#%d %s: %v", in.ESK, in.Index, in.Data, err)
	}
	return outs
}

func snap(t *testing.T, e *Engine) []byte {
	t.Helper()
	s, err := e.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// accepted is what the property test knows of an accepted order.
type accepted struct {
	Order
	seq               uint64
	filled, cancelled int64
	doneSeen          bool
}

func TestDeterminismAndInvariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(20240601, 42))
	instruments := []string{"btc-eur", "eth-eur", "sol-eur"}
	ins := genInputs(rng, 5000, instruments)
	mid := 1 + rng.IntN(len(ins)-1)

	a, b := New(), New()
	var c *Engine
	orders := map[string]*accepted{} // by instrument + "/" + id
	counts := map[string]int{}
	for i, in := range ins {
		outA, outB := stepOK(t, a, in), stepOK(t, b, in)
		if !equalOutputs(outA, outB) {
			t.Fatalf("input %d: engines disagree:\n%q\n%q", i, outA, outB)
		}
		if c != nil {
			if outC := stepOK(t, c, in); !equalOutputs(outA, outC) {
				t.Fatalf("input %d: restored engine disagrees:\n%q\n%q", i, outA, outC)
			}
		}
		checkOutputs(t, in, outA, orders, counts)
		for inst, bk := range a.books {
			bid, okBid := bk.best(buy)
			ask, okAsk := bk.best(sell)
			if okBid && okAsk && bid >= ask {
				t.Fatalf("input %d: book %s crossed: bid %d, ask %d", i, inst, bid, ask)
			}
		}
		if i+1 == mid {
			sa, sb := snap(t, a), snap(t, b)
			if !bytes.Equal(sa, sb) {
				t.Fatalf("snapshots at input %d differ", i)
			}
			c = New()
			if err := c.Restore(sa); err != nil {
				t.Fatalf("restore at input %d: %v", i, err)
			}
			if sc := snap(t, c); !bytes.Equal(sa, sc) {
				t.Fatalf("snapshot after restore differs:\n%s\n%s", sa, sc)
			}
		}
	}
	sa, sb, sc := snap(t, a), snap(t, b), snap(t, c)
	if !bytes.Equal(sa, sb) || !bytes.Equal(sa, sc) {
		t.Fatal("final snapshots differ")
	}

	// Every accepted order's quantity is accounted for exactly once.
	for key, o := range orders {
		inst, id, _ := strings.Cut(key, "/")
		var resting int64
		if r := a.books[inst].resting[id]; r != nil {
			resting = r.remaining
		}
		if o.filled+o.cancelled+resting != o.Qty {
			t.Fatalf("order %s: qty %d, filled %d, cancelled %d, resting %d", key, o.Qty, o.filled, o.cancelled, resting)
		}
		if o.doneSeen != (o.filled == o.Qty) {
			t.Fatalf("order %s: filled %d of %d, done seen %v", key, o.filled, o.Qty, o.doneSeen)
		}
	}
	for _, typ := range []string{TypeAck, TypeReject, TypeTrade, TypeCancelled, TypeDone} {
		if counts[typ] < 100 {
			t.Errorf("only %d %s outputs; the inputs do not exercise the book", counts[typ], typ)
		}
	}
	depth := 0
	for _, bk := range a.books {
		depth = max(depth, len(bk.resting))
	}
	t.Logf("outputs by type: %v; snapshot taken after input %d; at most %d orders resting in a book at the end", counts, mid, depth)
}

func equalOutputs(x, y [][]byte) bool {
	return bytes.Equal(bytes.Join(x, []byte("\n")), bytes.Join(y, []byte("\n"))) && len(x) == len(y)
}

// checkOutputs checks one step's outputs against what is known of the
// orders, and records their effect.
func checkOutputs(t *testing.T, in transform.Input, outs [][]byte, orders map[string]*accepted, counts map[string]int) {
	t.Helper()
	inst := instrumentOf(in.ESK)
	var taker Order
	_ = json.Unmarshal(in.Data, &taker)
	var last *accepted // the previous maker of this step
	for k, raw := range outs {
		var o Output
		if err := json.Unmarshal(raw, &o); err != nil {
			t.Fatalf("output %s: %v", raw, err)
		}
		counts[o.Type]++
		if o.Instrument != inst || o.Input != (InputRef{ESK: in.ESK, Index: in.Index}) {
			t.Fatalf("output %s: wrong instrument or input for %s#%d", raw, in.ESK, in.Index)
		}
		if o.Type == TypeReject {
			if len(outs) != 1 || o.Reason == "" {
				t.Fatalf("reject %s: not alone or without reason", raw)
			}
			continue
		}
		if k == 0 && (taker.Op == OpLimit || taker.Op == OpMarket) {
			orders[inst+"/"+taker.ID] = &accepted{Order: taker, seq: in.Seq}
		}
		switch o.Type {
		case TypeTrade:
			maker, tk := orders[inst+"/"+o.Maker], orders[inst+"/"+o.Taker]
			if maker == nil || tk == nil || o.Taker != taker.ID || maker.Op != OpLimit || maker.seq >= tk.seq {
				t.Fatalf("trade %s: bad maker or taker", raw)
			}
			if o.Price != maker.Price {
				t.Fatalf("trade %s: price is not the maker's limit %d", raw, maker.Price)
			}
			// Makers come in priority order: better price, then earlier.
			if last != nil {
				worse := maker.Price < last.Price
				if taker.Side == "buy" {
					worse = maker.Price > last.Price
				}
				if !worse && (maker.Price != last.Price || maker.seq <= last.seq) {
					t.Fatalf("trade %s: maker %s out of price-time priority after %s", raw, maker.ID, last.ID)
				}
			}
			last = maker
			buyer, seller := tk, maker
			if tk.Side == "sell" {
				buyer, seller = maker, tk
			}
			if buyer.ID != o.Buy || seller.ID != o.Sell || buyer.Side != "buy" || seller.Side != "sell" {
				t.Fatalf("trade %s: buy and sell do not match the orders' sides", raw)
			}
			if tk.Op == OpLimit && (tk.Side == "buy" && o.Price > tk.Price || tk.Side == "sell" && o.Price < tk.Price) {
				t.Fatalf("trade %s: beyond the taker's limit %d", raw, tk.Price)
			}
			for _, x := range []*accepted{maker, tk} {
				if x.filled += o.Qty; x.filled > x.Qty || o.Qty <= 0 {
					t.Fatalf("trade %s: order %s filled %d of %d", raw, x.ID, x.filled, x.Qty)
				}
			}
		case TypeDone:
			x := orders[inst+"/"+o.ID]
			if x == nil || x.filled != x.Qty || x.doneSeen {
				t.Fatalf("done %s: order not exactly filled", raw)
			}
			x.doneSeen = true
		case TypeCancelled:
			x := orders[inst+"/"+o.ID]
			if x == nil || o.Remaining <= 0 || x.filled+o.Remaining != x.Qty || x.cancelled != 0 {
				t.Fatalf("cancelled %s: remaining does not match", raw)
			}
			x.cancelled = o.Remaining
		}
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	e := New()
	if s := snap(t, e); string(s) != `{"books":[]}` {
		t.Fatalf("empty snapshot %s", s)
	}
	for _, in := range genInputs(rand.New(rand.NewPCG(1, 2)), 300, []string{"x", "y"}) {
		stepOK(t, e, in)
	}
	s := snap(t, e)
	r := New()
	if err := r.Restore(s); err != nil {
		t.Fatal(err)
	}
	if s2 := snap(t, r); !bytes.Equal(s, s2) {
		t.Fatalf("round trip changed the snapshot:\n%s\n%s", s, s2)
	}
}

func TestRestoreRefusesMalformed(t *testing.T) {
	good := `{"books":[{"instrument":"x","bids":[{"price":100,"orders":[{"id":"b1","account":"a","qty":5,"remaining":3,"seq":1},{"id":"b2","account":"a","qty":2,"remaining":2,"seq":4}]}],` +
		`"asks":[{"price":101,"orders":[{"id":"s1","account":"a","qty":1,"remaining":1,"seq":2}]},{"price":102,"orders":[{"id":"s2","account":"a","qty":1,"remaining":1,"seq":3}]}],"seen":["b1","b2","s0","s1","s2"]}]}`
	if err := New().Restore([]byte(good)); err != nil {
		t.Fatalf("good snapshot refused: %v", err)
	}
	tests := []struct{ name, snapshot, want string }{
		{"empty", ``, "malformed snapshot"},
		{"not JSON", `{"books":`, "malformed snapshot"},
		{"trailing data", `{"books":[]} {}`, "data after the JSON object"},
		{"unknown field", `{"books":[],"x":1}`, "unknown field"},
		{"float qty", strings.Replace(good, `"qty":5`, `"qty":5.5`, 1), "malformed snapshot"},
		{"empty instrument", strings.Replace(good, `"instrument":"x"`, `"instrument":""`, 1), "not one ESK token"},
		{"unsorted books", `{"books":[{"instrument":"y","bids":[],"asks":[],"seen":[]},{"instrument":"x","bids":[],"asks":[],"seen":[]}]}`, "books are not sorted"},
		{"unsorted seen", strings.Replace(good, `"b1","b2"`, `"b2","b1"`, 1), "seen ids are not sorted"},
		{"unseen order", strings.Replace(good, `"s0","s1"`, `"s0"`, 1), `order "s1" is not among the seen ids`},
		{"zero remaining", strings.Replace(good, `"remaining":3`, `"remaining":0`, 1), "remaining 0"},
		{"remaining above qty", strings.Replace(good, `"remaining":3`, `"remaining":6`, 1), "remaining 6"},
		{"nonpositive price", strings.Replace(good, `"price":100`, `"price":0`, 1), "not positive"},
		{"asks out of order", strings.Replace(good, `"price":102`, `"price":101`, 1), "not strictly ordered"},
		{"empty level", strings.Replace(good, `{"price":102,"orders":[{"id":"s2","account":"a","qty":1,"remaining":1,"seq":3}]}`, `{"price":102,"orders":[]}`, 1), "has no orders"},
		{"arrival out of order", strings.Replace(good, `"seq":4`, `"seq":0`, 1), "arrived before"},
		{"rests twice", strings.Replace(good, `"id":"s2"`, `"id":"s1"`, 1), "rests twice"},
		{"crossed", strings.Replace(good, `"price":100`, `"price":101`, 1), "crossed"},
		{"missing field", strings.Replace(good, `,"seen":["b1","b2","s0","s1","s2"]`, ``, 1), "not among the seen ids"},
		{"null list", `{"books":[{"instrument":"x","bids":null,"asks":[],"seen":[]}]}`, "not in canonical form"},
		{"spacing", `{"books": []}`, "not in canonical form"},
	}
	e := New()
	in := transform.Input{ESK: "orders.z", Seq: 1, Data: []byte(`{"op":"limit","id":"o1","side":"buy","price":100,"qty":5,"account":"a"}`)}
	stepOK(t, e, in)
	before := snap(t, e)
	for _, tc := range tests {
		err := e.Restore([]byte(tc.snapshot))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
		if after := snap(t, e); !bytes.Equal(before, after) {
			t.Fatalf("%s: a refused restore changed the state", tc.name)
		}
	}
}

// TestStepErrorLeavesState corrupts a book, which Step and Restore never
// do, to check that the one error Step can return changes nothing.
func TestStepErrorLeavesState(t *testing.T) {
	e := runProtocol(t, []step{
		{in: `{"op":"limit","id":"o1","side":"buy","price":100,"qty":5,"account":"a"}`, want: []string{`{"type":"ack","id":"o1"}`}},
		{in: `{"op":"limit","id":"o2","side":"buy","price":100,"qty":5,"account":"a"}`, want: []string{`{"type":"ack","id":"o2"}`}},
	})
	before := snap(t, e)
	e.books["x"].resting["o1"].lvl = &level{price: 100}
	in := transform.Input{ESK: "orders.x", Index: 2, Seq: 3, Data: []byte(`{"op":"cancel","id":"o1"}`)}
	if outs, err := e.Step(transform.NewContext(in), in); err == nil || outs != nil {
		t.Fatalf("Step on a corrupt book: %q, %v; want an error", outs, err)
	}
	if after := snap(t, e); !bytes.Equal(before, after) {
		t.Fatalf("a failed step changed the state:\n%s\n%s", before, after)
	}
}

// TestOutputBytes pins the exact encoding of outputs, field order included.
func TestOutputBytes(t *testing.T) {
	e := New()
	var got []string
	for i, data := range []string{
		`{"op":"limit","id":"o1","side":"buy","price":100,"qty":5,"account":"a1"}`,
		`{"op":"market","id":"o2","side":"sell","qty":7,"account":"a2"}`,
	} {
		in := transform.Input{ESK: "orders.btc-eur", Index: uint64(i), Seq: uint64(i + 1), Data: []byte(data)}
		for _, o := range stepOK(t, e, in) {
			got = append(got, string(o))
		}
	}
	want := []string{
		`{"type":"ack","instrument":"btc-eur","id":"o1","input":{"esk":"orders.btc-eur","index":0}}`,
		`{"type":"trade","instrument":"btc-eur","buy":"o1","sell":"o2","price":100,"qty":5,"maker":"o1","taker":"o2","input":{"esk":"orders.btc-eur","index":1}}`,
		`{"type":"done","instrument":"btc-eur","id":"o1","input":{"esk":"orders.btc-eur","index":1}}`,
		`{"type":"cancelled","instrument":"btc-eur","id":"o2","remaining":2,"input":{"esk":"orders.btc-eur","index":1}}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
