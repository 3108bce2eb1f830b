package matching_test

import (
	"fmt"

	"github.com/detbus/detbus/examples/matching"
	"github.com/detbus/detbus/transform"
)

// ExampleSpec feeds a few orders on one instrument to a fresh engine and
// prints the events they cause.
func ExampleSpec() {
	spec := matching.Spec()
	engine := spec.New()
	orders := [][]byte{
		transform.JSON(matching.Order{Op: matching.OpLimit, ID: "o1", Side: "buy", Price: 100, Qty: 5, Account: "a1"}),
		transform.JSON(matching.Order{Op: matching.OpLimit, ID: "o2", Side: "buy", Price: 101, Qty: 2, Account: "a1"}),
		transform.JSON(matching.Order{Op: matching.OpLimit, ID: "o3", Side: "sell", Price: 100, Qty: 4, Account: "a2"}),
		transform.JSON(matching.Order{Op: matching.OpMarket, ID: "o4", Side: "sell", Qty: 5, Account: "a3"}),
		transform.JSON(matching.Order{Op: matching.OpCancel, ID: "o1"}),
		[]byte(`{"op":"limit","id":"o5","side":"sell","price":99.5,"qty":1,"account":"a2"}`),
	}
	for i, data := range orders {
		in := transform.Input{ESK: "orders.btc-eur", Index: uint64(i), Seq: uint64(i + 1), Data: data}
		outs, err := engine.Step(transform.NewContext(in), in)
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		for _, out := range outs {
			fmt.Println(string(out))
		}
	}
	// Output:
	// {"type":"ack","instrument":"btc-eur","id":"o1","input":{"esk":"orders.btc-eur","index":0}}
	// {"type":"ack","instrument":"btc-eur","id":"o2","input":{"esk":"orders.btc-eur","index":1}}
	// {"type":"ack","instrument":"btc-eur","id":"o3","input":{"esk":"orders.btc-eur","index":2}}
	// {"type":"trade","instrument":"btc-eur","buy":"o2","sell":"o3","price":101,"qty":2,"maker":"o2","taker":"o3","input":{"esk":"orders.btc-eur","index":2}}
	// {"type":"done","instrument":"btc-eur","id":"o2","input":{"esk":"orders.btc-eur","index":2}}
	// {"type":"trade","instrument":"btc-eur","buy":"o1","sell":"o3","price":100,"qty":2,"maker":"o1","taker":"o3","input":{"esk":"orders.btc-eur","index":2}}
	// {"type":"done","instrument":"btc-eur","id":"o3","input":{"esk":"orders.btc-eur","index":2}}
	// {"type":"trade","instrument":"btc-eur","buy":"o1","sell":"o4","price":100,"qty":3,"maker":"o1","taker":"o4","input":{"esk":"orders.btc-eur","index":3}}
	// {"type":"done","instrument":"btc-eur","id":"o1","input":{"esk":"orders.btc-eur","index":3}}
	// {"type":"cancelled","instrument":"btc-eur","id":"o4","remaining":2,"input":{"esk":"orders.btc-eur","index":3}}
	// {"type":"reject","instrument":"btc-eur","id":"o1","reason":"order \"o1\" is not resting","input":{"esk":"orders.btc-eur","index":4}}
	// {"type":"reject","instrument":"btc-eur","id":"o5","reason":"price must be an integer","input":{"esk":"orders.btc-eur","index":5}}
}
