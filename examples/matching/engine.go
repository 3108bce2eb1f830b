package matching

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	strict "github.com/detbus/detbus/transform/fields"

	"github.com/detbus/detbus/transform"
)

// The ops an order may name.
const (
	OpLimit  = "limit"
	OpMarket = "market"
	OpCancel = "cancel"
)

// The values of [Output.Type].
const (
	TypeAck       = "ack"
	TypeReject    = "reject"
	TypeTrade     = "trade"
	TypeCancelled = "cancelled"
	TypeDone      = "done"
)

// Spec describes the matching DET: it reads orders from "orders.*", one
// ESK per instrument, and writes events to "matching.events".
func Spec() transform.Spec {
	return transform.Spec{
		Name:    "matching",
		Version: "1",
		Inputs:  []string{"orders.*"},
		Output:  "matching.events",
		New:     func() transform.Transform { return New() },
	}
}

// Order is an order as a client writes it. Fields an op does not use are
// left zero so that they are omitted.
type Order struct {
	Op      string `json:"op"`
	ID      string `json:"id"`
	Side    string `json:"side,omitempty"`
	Price   int64  `json:"price,omitempty"`
	Qty     int64  `json:"qty,omitempty"`
	Account string `json:"account,omitempty"`
}

// Output is an event the engine writes. Fields a type does not use are
// zero and omitted; quantities and prices in outputs are always positive.
type Output struct {
	Type       string   `json:"type"`
	Instrument string   `json:"instrument"`
	ID         string   `json:"id,omitempty"`
	Buy        string   `json:"buy,omitempty"`
	Sell       string   `json:"sell,omitempty"`
	Price      int64    `json:"price,omitempty"`
	Qty        int64    `json:"qty,omitempty"`
	Maker      string   `json:"maker,omitempty"`
	Taker      string   `json:"taker,omitempty"`
	Remaining  int64    `json:"remaining,omitempty"`
	Reason     string   `json:"reason,omitempty"`
	Input      InputRef `json:"input"`
}

// InputRef locates the input an output answers.
type InputRef struct {
	ESK   string `json:"esk"`
	Index uint64 `json:"index"`
}

// Engine is the matching DET: one order book per instrument. The zero
// value is not ready; use [New].
type Engine struct {
	books map[string]*book // by instrument; iterated only in sorted order
}

var _ transform.Transform = (*Engine)(nil)

// New returns an engine with no books.
func New() *Engine { return &Engine{books: map[string]*book{}} }

// request is a validated order.
type request struct {
	op, id, account string
	side            side
	price, qty      int64
}

// fieldsOf lists, for each op, the fields its orders may carry.
var fieldsOf = map[string][]string{
	OpLimit:  {"account", "id", "op", "price", "qty", "side"},
	OpMarket: {"account", "id", "op", "qty", "side"},
	OpCancel: {"id", "op"},
}

// knownFields is every field some op uses.
var knownFields = []string{"account", "id", "op", "price", "qty", "side"}

// Step applies one order to its instrument's book and returns the events
// it causes. Invalid orders yield a single reject and change nothing.
// Step returns an error only if it finds the book corrupt, and then
// leaves the state as it was.
func (e *Engine) Step(_ *transform.Context, in transform.Input) ([][]byte, error) {
	inst := instrumentOf(in.ESK)
	var outs [][]byte
	emit := func(o Output) {
		o.Instrument, o.Input = inst, InputRef{ESK: in.ESK, Index: in.Index}
		outs = append(outs, transform.JSON(o))
	}
	req, reason := parse(in)
	if reason == "" && inst == "" {
		reason = "ESK " + strict.Quote(in.ESK) + " names no instrument"
	}
	b := e.books[inst]
	switch {
	case reason != "":
	case req.op != OpCancel && b.hasSeen(req.id):
		reason = "duplicate id " + strict.Quote(req.id)
	case req.op == OpCancel && !b.hasSeen(req.id):
		reason = "unknown order " + strict.Quote(req.id)
	case req.op == OpCancel && b.resting[req.id] == nil:
		reason = "order " + strict.Quote(req.id) + " is not resting"
	}
	if reason != "" {
		emit(Output{Type: TypeReject, ID: req.id, Reason: reason})
		return outs, nil
	}

	if req.op == OpCancel {
		o := b.resting[req.id]
		i, ok := b.locate(o)
		if !ok {
			return nil, fmt.Errorf("matching: book %s is corrupt: resting order %s is not in its price level", strict.Quote(inst), strict.Quote(o.id))
		}
		b.remove(o, i)
		emit(Output{Type: TypeCancelled, ID: o.id, Remaining: o.remaining})
		return outs, nil
	}

	if b == nil {
		b = newBook()
		e.books[inst] = b
	}
	b.seen[req.id] = struct{}{}
	o := &order{id: req.id, account: req.account, side: req.side, price: req.price,
		qty: req.qty, remaining: req.qty, seq: in.Seq}
	if req.op == OpLimit {
		emit(Output{Type: TypeAck, ID: o.id})
	}
	for _, f := range b.match(o) {
		t := Output{Type: TypeTrade, Buy: o.id, Sell: f.maker.id, Price: f.price, Qty: f.qty, Maker: f.maker.id, Taker: o.id}
		if o.side == sell {
			t.Buy, t.Sell = f.maker.id, o.id
		}
		emit(t)
		if f.makerDone {
			emit(Output{Type: TypeDone, ID: f.maker.id})
		}
	}
	switch {
	case o.remaining == 0:
		emit(Output{Type: TypeDone, ID: o.id})
	case req.op == OpMarket:
		emit(Output{Type: TypeCancelled, ID: o.id, Remaining: o.remaining})
	default:
		b.rest(o)
	}
	return outs, nil
}

// hasSeen reports whether the book, which may be nil, accepted an order
// with the given id.
func (b *book) hasSeen(id string) bool {
	if b == nil {
		return false
	}
	_, ok := b.seen[id]
	return ok
}

// instrumentOf returns the last token of an ESK.
func instrumentOf(esk string) string { return esk[strings.LastIndexByte(esk, '.')+1:] }

// parse validates an input as an order. It returns the order, or the
// reason it is invalid together with whatever usable id the input has.
// The checks run in a fixed order, so that an input with several faults
// always gets the same reason.
func parse(in transform.Input) (request, string) {
	var r request
	if in.ContentType != "" && in.ContentType != "application/json" {
		return r, "content type " + strict.Quote(in.ContentType) + " is not JSON"
	}
	fields, reason := strict.Parse(in.Data, "order")
	if reason != "" {
		return r, reason
	}
	// The id is reported with any later reason, when it is usable.
	id, idReason := fields.String("id")
	r.id = id
	op, reason := fields.String("op")
	if reason != "" {
		return r, reason
	}
	allowed, ok := fieldsOf[op]
	if !ok {
		return r, "unknown op " + strict.Quote(op)
	}
	r.op = op
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		if !fields.Present(name) || slices.Contains(allowed, name) {
			continue
		}
		if slices.Contains(knownFields, name) {
			return r, "field " + strict.Quote(name) + " does not apply to " + op
		}
		return r, "unknown field " + strict.Quote(name)
	}
	if idReason != "" {
		return r, idReason
	}
	if op == OpCancel {
		return r, ""
	}
	s, reason := fields.String("side")
	switch {
	case reason == "missing side":
		return r, reason
	case s == "buy":
		r.side = buy
	case s == "sell":
		r.side = sell
	default:
		return r, `side must be "buy" or "sell"`
	}
	if op == OpLimit {
		if r.price, reason = fields.PositiveInt("price"); reason != "" {
			return r, reason
		}
	}
	if r.qty, reason = fields.PositiveInt("qty"); reason != "" {
		return r, reason
	}
	r.account, reason = fields.String("account")
	return r, reason
}

// snapshot is the encoded state of an engine.
type snapshot struct {
	Books []snapBook `json:"books"` // sorted by instrument
}

// Snapshot encodes the state canonically: books sorted by instrument, each
// side's levels best first, each level's orders in arrival order, and the
// seen ids sorted.
func (e *Engine) Snapshot() ([]byte, error) {
	s := snapshot{Books: make([]snapBook, 0, len(e.books))}
	for _, inst := range slices.Sorted(maps.Keys(e.books)) {
		s.Books = append(s.Books, e.books[inst].snapshot(inst))
	}
	return json.Marshal(s)
}

// Restore replaces the state with a snapshot made by [Engine.Snapshot]. It
// refuses anything else, naming what is wrong, and then leaves the state
// as it was.
func (e *Engine) Restore(data []byte) error {
	var s snapshot
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return fmt.Errorf("matching: restore: malformed snapshot: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("matching: restore: malformed snapshot: data after the JSON object")
	}
	books := make(map[string]*book, len(s.Books))
	for i, sb := range s.Books {
		switch {
		case sb.Instrument == "" || strings.Contains(sb.Instrument, "."):
			return fmt.Errorf("matching: restore: malformed snapshot: book %d has instrument %s, not one ESK token", i, strict.Quote(sb.Instrument))
		case i > 0 && s.Books[i-1].Instrument >= sb.Instrument:
			return fmt.Errorf("matching: restore: malformed snapshot: books are not sorted and unique at %s", strict.Quote(sb.Instrument))
		}
		b, err := restoreBook(sb)
		if err != nil {
			return fmt.Errorf("matching: restore: malformed snapshot: book %s: %w", strict.Quote(sb.Instrument), err)
		}
		books[sb.Instrument] = b
	}
	// The checks above leave only what the decoder forgives: absent
	// fields, null for empty lists, other spacing or field order. A
	// snapshot must be exactly what its state encodes to.
	restored := &Engine{books: books}
	if canon, err := restored.Snapshot(); err != nil || !bytes.Equal(canon, data) {
		return errors.New("matching: restore: malformed snapshot: not in canonical form (a field is missing or null, or the encoding differs)")
	}
	e.books = books
	return nil
}
