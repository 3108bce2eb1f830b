package bank_test

import (
	"fmt"

	"github.com/detbus/detbus/examples/bank"
	"github.com/detbus/detbus/transform"
)

func Example() {
	b := bank.New()
	commands := []string{
		`{"op":"deposit","id":"c1","account":"alice","amount":100}`,
		`{"op":"transfer","id":"c2","from":"alice","to":"bob","amount":30}`,
		`{"op":"withdraw","id":"c3","account":"bob","amount":50}`,
		`{"op":"deposit","id":"c1","account":"alice","amount":100}`,
		`{"op":"deposit","id":"c4","account":"alice","amount":1.5}`,
	}
	for i, c := range commands {
		in := transform.Input{ESK: "bank.commands.web", Index: uint64(i), Seq: uint64(i + 1), Data: []byte(c)}
		outs, err := b.Step(transform.NewContext(in), in)
		if err != nil {
			panic(err)
		}
		fmt.Println(string(outs[0]))
	}
	fmt.Println(b.Balances())
	// Output:
	// {"id":"c1","op":"deposit","decision":"accepted","balances":{"alice":100},"input":{"esk":"bank.commands.web","index":0}}
	// {"id":"c2","op":"transfer","decision":"accepted","balances":{"alice":70,"bob":30},"input":{"esk":"bank.commands.web","index":1}}
	// {"id":"c3","op":"withdraw","decision":"rejected","reason":"insufficient funds: \"bob\" has 30, needs 50","input":{"esk":"bank.commands.web","index":2}}
	// {"id":"c1","op":"deposit","decision":"rejected","reason":"duplicate id","input":{"esk":"bank.commands.web","index":3}}
	// {"id":"c4","op":"deposit","decision":"rejected","reason":"amount must be an integer","input":{"esk":"bank.commands.web","index":4}}
	// map[alice:70 bob:30]
}

// A client builds commands with [bank.Command]; fields the op does not use
// are omitted.
func ExampleCommand() {
	fmt.Println(string(transform.JSON(bank.Command{Op: bank.OpTransfer, ID: "t-17", From: "alice", To: "bob", Amount: 2500})))
	// Output:
	// {"op":"transfer","id":"t-17","from":"alice","to":"bob","amount":2500}
}
