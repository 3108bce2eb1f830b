// Package bank is a deterministic transform (DET) that keeps accounts with
// integer balances and decides, for every command it reads, whether to
// accept it.
//
// The DET reads JSON commands from the ESKs "bank.commands.>" and writes one
// JSON decision per command to "bank.decisions" (see [Spec]). Amounts and
// balances are int64 counts of minor units (cents, say); no floating point is
// involved anywhere. A balance never goes below zero.
//
// # Commands
//
// A command is a JSON object. Every command has an "op" and an "id"; the
// other fields depend on the op, and a field that does not belong to the op
// is an error:
//
//	{"op":"deposit","id":"c1","account":"alice","amount":100}
//	{"op":"withdraw","id":"c2","account":"alice","amount":30}
//	{"op":"transfer","id":"c3","from":"alice","to":"bob","amount":50}
//
// "id", "account", "from" and "to" are non-empty strings. "amount" is a
// positive JSON integer that fits in an int64: 100 is an amount, while 100.0,
// 1e2, "100" and 9223372036854775808 are not. A null field counts as absent.
// An account comes into existence, with balance 0, when a deposit or a
// transfer pays into it; withdrawing from or transferring out of an account
// that does not exist is an overdraft. [Command] builds commands from Go.
//
// # Decisions
//
// Every command yields exactly one decision, an accepted one
//
//	{"id":"c1","op":"deposit","decision":"accepted","balances":{"alice":100},"input":{"esk":"bank.commands.web","index":0}}
//
// or a rejected one
//
//	{"id":"c2","op":"withdraw","decision":"rejected","reason":"insufficient funds: \"alice\" has 100, needs 130","input":{"esk":"bank.commands.web","index":1}}
//
// The fields come in this order:
//
//   - "id": the command's id; absent when the command has no usable id.
//   - "op": the command's op as given, whenever it is a string, even on a
//     rejection for another fault; absent otherwise.
//   - "decision": "accepted" or "rejected".
//   - "reason": only on rejections; a short text naming what is wrong.
//   - "balances": only on acceptances; the balances of the accounts the
//     command touched, after it, as an object with keys in sorted order.
//   - "input": where the command was read, its ESK and its index there, so
//     that a decision can be matched to its command even when the command
//     is malformed.
//
// The reasons are
//
//	content type "text/plain" is not JSON
//	malformed JSON
//	command must be a JSON object
//	duplicate field "amount"
//	missing id | id must be a string | id must not be empty
//	duplicate id
//	missing op | op must be a string | op must not be empty | unknown op "pay"
//	unknown field "memo" | field "to" does not apply to deposit
//	missing account | account must be a string | account must not be empty
//	    (and the same for from and to)
//	missing amount | amount must be an integer | amount out of range
//	amount must be positive
//	transfer to self
//	insufficient funds: "alice" has 20, needs 30
//	balance of "bob" would overflow
//
// and the checks run in the order of this list, so that a command with
// several faults always gets the same reason. Strings quoted in a reason are
// quoted as JSON strings. [Decision] decodes decisions in Go.
//
// # Ids
//
// An id names one command. The first command with a given id decides it,
// whether that command is accepted or rejected; any later command with the
// same id is rejected with the reason "duplicate id" and changes nothing,
// so a client may resend a command it is unsure about without applying it
// twice. A command rejected before its id is read (not JSON, not an object,
// a field given twice, no usable id) consumes no id. The set of ids seen is
// part of the state and grows with every command that has a usable id.
//
// # Errors
//
// [Bank.Step] never returns an error: malformed input is a rejected
// decision, not a failure of the transform.
//
// # Snapshots
//
// A snapshot is canonical JSON: the accounts sorted by name, each with its
// balance, and the sorted set of ids seen.
//
//	{"accounts":[{"name":"alice","balance":20},{"name":"bob","balance":50}],"seen":["c1","c2","c3"]}
//
// Two instances at the same input position produce the same bytes.
// [Bank.Restore] accepts exactly this shape: both fields present, no other
// field, names and ids non-empty and strictly increasing, balances not
// negative. It refuses anything else with an error and then leaves the
// state as it was.
package bank
