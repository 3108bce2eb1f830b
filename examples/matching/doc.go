// Package matching is a deterministic transform (DET) that runs a
// price-time-priority limit order book per instrument.
//
// The DET reads JSON orders from the ESKs "orders.*", one ESK per
// instrument, and writes JSON events to "matching.events" (see [Spec]).
// The instrument is the ESK's last token: orders written to
// "orders.btc-eur" trade on the book "btc-eur". Instruments are
// independent of each other, order ids included. Prices are int64 counts
// of ticks and quantities int64 counts of lots; no floating point is
// involved anywhere.
//
// # Orders
//
// An order is a JSON object with an "op"; the other fields depend on the
// op, and a field that does not belong to the op is an error:
//
//	{"op":"limit","id":"o1","side":"buy","price":100,"qty":5,"account":"a1"}
//	{"op":"market","id":"o2","side":"sell","qty":3,"account":"a2"}
//	{"op":"cancel","id":"o1"}
//
// A limit order trades against the opposite side at its limit price or
// better, and what it cannot fill rests in the book. A market order trades
// at any price, and what it cannot fill is cancelled: it never rests. A
// cancel takes a resting order out of the book.
//
// "id", "side" and "account" are non-empty strings, and "side" is "buy" or
// "sell". "price" and "qty" are positive JSON integers that fit in an
// int64: 100 is a price, while 100.0, 1e2, "100" and 9223372036854775808
// are not. A null field counts as absent. [Order] builds orders from Go.
//
// # Matching
//
// An incoming order trades with the best opposite price first and, among
// resting orders at one price, with the earliest arrival first; arrival is
// the order of the inputs in the log (their stream sequence). Every fill
// is at the resting (maker) order's price. There is no self-trade
// prevention: orders of one account may trade with each other.
//
// # Events
//
// Every event carries its "type", the "instrument" and, as "input", the ESK
// and index of the order that caused it, so that events can be matched to
// their order even when the order is malformed:
//
//	{"type":"ack","instrument":"btc-eur","id":"o1","input":{"esk":"orders.btc-eur","index":0}}
//	{"type":"trade","instrument":"btc-eur","buy":"o1","sell":"o3","price":100,"qty":2,"maker":"o1","taker":"o3","input":{"esk":"orders.btc-eur","index":2}}
//	{"type":"done","instrument":"btc-eur","id":"o1","input":{"esk":"orders.btc-eur","index":2}}
//	{"type":"cancelled","instrument":"btc-eur","id":"o2","remaining":3,"input":{"esk":"orders.btc-eur","index":1}}
//	{"type":"reject","instrument":"btc-eur","id":"o9","reason":"qty must be positive","input":{"esk":"orders.btc-eur","index":3}}
//
// The types are:
//
//   - "ack": a limit order is accepted. It comes before the order's trades.
//   - "trade": one fill, at the maker's price; "buy" and "sell" name the
//     two orders, "maker" the resting one and "taker" the incoming one.
//   - "done": an order is fully filled. A maker's "done" follows the trade
//     that fills it; the taker's follows its last trade.
//   - "cancelled": a cancel took a resting order out of the book, or a
//     market order could not be filled completely; "remaining" is the
//     quantity left unfilled, always positive.
//   - "reject": the input is not a valid order; "reason" says why and "id"
//     is the input's id when it has a usable one.
//
// One input yields its events in this order: the ack, then each trade
// followed by the maker's done if that trade fills the maker, then the
// taker's done, or for a market order its cancelled. A limit order that
// is not filled completely rests silently after its trades. Every accepted
// order ends in exactly one "done" or "cancelled", unless it still rests.
// [Output] decodes events in Go.
//
// The reasons of a reject are
//
//	content type "text/plain" is not JSON
//	malformed JSON
//	order must be a JSON object
//	duplicate field "qty"
//	missing op | op must be a string | op must not be empty | unknown op "stop"
//	unknown field "memo" | field "price" does not apply to market
//	missing id | id must be a string | id must not be empty
//	missing side | side must be "buy" or "sell"
//	missing price | price must be an integer | price out of range | price must be positive
//	    (and the same for qty)
//	missing account | account must be a string | account must not be empty
//	ESK "x." names no instrument
//	duplicate id "o1"
//	unknown order "o1"
//	order "o1" is not resting
//
// and the checks run in the order of this list, so that an input with
// several faults always gets the same reason. Strings quoted in a reason
// are quoted as JSON strings. A rejected input changes nothing.
//
// # Ids
//
// An id names one order of an instrument. A limit or market order that is
// accepted consumes its id, and any later order with the same id on that
// instrument is rejected as a duplicate, so a client may resend an order
// it is unsure about without placing it twice. A rejected order consumes
// no id. A cancel of an id that no accepted order had is rejected as
// unknown; a cancel of an order that is filled, already cancelled, or was
// a market order is rejected as not resting. The set of ids seen is part
// of the state and grows with every accepted order.
//
// # Errors
//
// Malformed input is a reject event, not a failure of the transform.
// [Engine.Step] returns an error only if it finds a book corrupt, which
// cannot happen to a book built by Step or [Engine.Restore], and it then
// leaves the state as it was.
//
// # Snapshots
//
// A snapshot is canonical JSON: the books sorted by instrument, each side's
// price levels best first (bids from the highest price, asks from the
// lowest), each level's resting orders in arrival order with their
// original and remaining quantity and their stream sequence, and the
// sorted ids the book has seen:
//
//	{"books":[{"instrument":"btc-eur","bids":[{"price":100,"orders":[{"id":"o1","account":"a1","qty":5,"remaining":3,"seq":1}]}],"asks":[],"seen":["o1","o3"]}]}
//
// Two instances at the same input position produce the same bytes.
// [Engine.Restore] accepts exactly what [Engine.Snapshot] produces: it
// checks that instruments and ids are sorted and unique, that levels are
// strictly ordered and not empty, that every resting order has 0 <
// remaining <= qty and was seen, that arrivals are in order within a
// level, that no book is crossed, and that the bytes are canonical. It
// refuses anything else with an error naming the fault, and then leaves
// the state as it was.
package matching
