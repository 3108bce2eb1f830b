package matching

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	strict "github.com/detbus/detbus/transform/fields"
)

// side is the side of an order.
type side int8

const (
	buy side = iota
	sell
)

func (s side) opposite() side { return 1 - s }

// String returns "buy" or "sell", as an order spells the side.
func (s side) String() string {
	if s == buy {
		return "buy"
	}
	return "sell"
}

// order is an order the book holds or is matching. Resting orders are
// linked into their price level's FIFO queue through prev and next.
type order struct {
	id        string
	account   string
	side      side
	price     int64 // limit price in ticks; 0 for a market order
	qty       int64 // quantity as ordered, in lots
	remaining int64 // quantity not yet filled
	seq       uint64

	lvl        *level
	prev, next *order
}

// level is the FIFO queue of the resting orders at one price on one side,
// earliest arrival at the head. It is a doubly linked list so that a
// cancel unlinks an order in O(1).
type level struct {
	price      int64
	head, tail *order
}

func (l *level) empty() bool { return l.head == nil }

func (l *level) pushBack(o *order) {
	o.lvl, o.prev, o.next = l, l.tail, nil
	if l.tail == nil {
		l.head = o
	} else {
		l.tail.next = o
	}
	l.tail = o
}

func (l *level) unlink(o *order) {
	if o.prev == nil {
		l.head = o.next
	} else {
		o.prev.next = o.next
	}
	if o.next == nil {
		l.tail = o.prev
	} else {
		o.next.prev = o.prev
	}
	o.lvl, o.prev, o.next = nil, nil, nil
}

// fill is one match of an incoming order against a resting one, at the
// resting (maker) order's price.
type fill struct {
	maker     *order
	price     int64
	qty       int64
	makerDone bool // the maker is fully filled and left the book
}

// book is the limit order book of one instrument.
//
// Each side is a slice of price levels kept sorted from the worst price
// to the best, so that the best level is the last element: bids ascend,
// asks descend. With L levels on a side:
//
//   - finding a level is a binary search, O(log L);
//   - adding a level is O(log L + L) for the slice insertion, and adding
//     an order to an existing level is O(log L);
//   - matching costs O(1) per fill plus O(1) per level it empties (popping
//     the last element);
//   - a cancel is an O(1) map lookup and unlink, plus O(log L + L) when it
//     empties its level;
//   - the set of seen ids and the map of resting orders are for lookups
//     only and are never iterated in an order that reaches the outputs.
//
// That is ample for books of many thousands of orders over a few hundred
// price levels.
type book struct {
	bids    []*level // ascending by price: the best bid is last
	asks    []*level // descending by price: the best ask is last
	resting map[string]*order
	seen    map[string]struct{} // ids of every order the book accepted
}

func newBook() *book {
	return &book{resting: map[string]*order{}, seen: map[string]struct{}{}}
}

// levels returns the side s of the book.
func (b *book) levels(s side) *[]*level {
	if s == buy {
		return &b.bids
	}
	return &b.asks
}

// compareLevel orders the levels of side s from worst to best.
func compareLevel(s side) func(*level, int64) int {
	if s == buy {
		return func(l *level, price int64) int { return cmp.Compare(l.price, price) }
	}
	return func(l *level, price int64) int { return cmp.Compare(price, l.price) }
}

// find returns the position of price among the levels of side s, and
// whether a level with that price exists there.
func (b *book) find(s side, price int64) (int, bool) {
	return slices.BinarySearchFunc(*b.levels(s), price, compareLevel(s))
}

// best returns the best price on side s, if the side has any order.
func (b *book) best(s side) (int64, bool) {
	lv := *b.levels(s)
	if len(lv) == 0 {
		return 0, false
	}
	return lv[len(lv)-1].price, true
}

// crosses reports whether an incoming order o may trade at price: any
// price for a market order, a price no worse than its limit otherwise.
func crosses(o *order, price int64) bool {
	switch {
	case o.price == 0:
		return true
	case o.side == buy:
		return price <= o.price
	default:
		return price >= o.price
	}
}

// match fills the incoming order o against the opposite side of the
// book, best price first and, within a price, earliest arrival first,
// for as long as o has quantity left and the best opposite price crosses.
// Makers that are fully filled leave the book. It does not rest o.
func (b *book) match(o *order) []fill {
	var fills []fill
	opp := b.levels(o.side.opposite())
	for o.remaining > 0 && len(*opp) > 0 {
		lvl := (*opp)[len(*opp)-1]
		if !crosses(o, lvl.price) {
			break
		}
		for o.remaining > 0 && !lvl.empty() {
			m := lvl.head
			q := min(o.remaining, m.remaining)
			o.remaining -= q
			m.remaining -= q
			f := fill{maker: m, price: lvl.price, qty: q}
			if m.remaining == 0 {
				lvl.unlink(m)
				delete(b.resting, m.id)
				f.makerDone = true
			}
			fills = append(fills, f)
		}
		if lvl.empty() {
			(*opp)[len(*opp)-1] = nil
			*opp = (*opp)[:len(*opp)-1]
		}
	}
	return fills
}

// rest adds the limit order o, which must not cross the book, at the back
// of its price level.
func (b *book) rest(o *order) {
	lv := b.levels(o.side)
	i, ok := b.find(o.side, o.price)
	if !ok {
		*lv = slices.Insert(*lv, i, &level{price: o.price})
	}
	(*lv)[i].pushBack(o)
	b.resting[o.id] = o
}

// locate returns the position of the resting order o's level on its
// side, or false if the book's structure does not hold o where o says it
// is, which cannot happen unless the book is corrupt.
func (b *book) locate(o *order) (int, bool) {
	i, ok := b.find(o.side, o.price)
	if !ok || o.lvl == nil || (*b.levels(o.side))[i] != o.lvl {
		return 0, false
	}
	return i, true
}

// remove takes the resting order o, at level position i on its side (see
// [book.locate]), out of the book, and drops its level if that empties it.
func (b *book) remove(o *order, i int) {
	lvl := o.lvl
	lvl.unlink(o)
	delete(b.resting, o.id)
	if lvl.empty() {
		lv := b.levels(o.side)
		*lv = slices.Delete(*lv, i, i+1)
	}
}

// snapBook is one instrument's book as a snapshot holds it.
type snapBook struct {
	Instrument string      `json:"instrument"`
	Bids       []snapLevel `json:"bids"` // best (highest) price first
	Asks       []snapLevel `json:"asks"` // best (lowest) price first
	Seen       []string    `json:"seen"` // sorted
}

type snapLevel struct {
	Price  int64       `json:"price"`
	Orders []snapOrder `json:"orders"` // earliest arrival first
}

type snapOrder struct {
	ID        string `json:"id"`
	Account   string `json:"account"`
	Qty       int64  `json:"qty"`
	Remaining int64  `json:"remaining"`
	Seq       uint64 `json:"seq"`
}

// snapshot encodes the book canonically. Slices are never nil, so that
// an empty side is [] both before and after a restore.
func (b *book) snapshot(instrument string) snapBook {
	sb := snapBook{Instrument: instrument, Bids: snapSide(b.bids), Asks: snapSide(b.asks)}
	sb.Seen = make([]string, 0, len(b.seen))
	for id := range b.seen {
		sb.Seen = append(sb.Seen, id)
	}
	slices.Sort(sb.Seen)
	return sb
}

func snapSide(levels []*level) []snapLevel {
	out := make([]snapLevel, 0, len(levels))
	for i := len(levels) - 1; i >= 0; i-- {
		sl := snapLevel{Price: levels[i].price, Orders: []snapOrder{}}
		for o := levels[i].head; o != nil; o = o.next {
			sl.Orders = append(sl.Orders, snapOrder{ID: o.id, Account: o.account, Qty: o.qty, Remaining: o.remaining, Seq: o.seq})
		}
		out = append(out, sl)
	}
	return out
}

// restoreBook rebuilds a book from its snapshot, checking every property
// the book relies on: sorted unique seen ids, strictly ordered positive
// price levels with no empty level, resting orders with 0 < remaining <=
// qty that were seen and rest only once, arrivals in order within a
// level, and no crossed book.
func restoreBook(sb snapBook) (*book, error) {
	b := newBook()
	for i, id := range sb.Seen {
		if id == "" {
			return nil, fmt.Errorf("seen id %d is empty", i)
		}
		if i > 0 && sb.Seen[i-1] >= id {
			return nil, fmt.Errorf("seen ids are not sorted and unique at %s", strict.Quote(id))
		}
		b.seen[id] = struct{}{}
	}
	for _, s := range []side{buy, sell} {
		levels := sb.Bids
		if s == sell {
			levels = sb.Asks
		}
		lv := b.levels(s)
		for i, sl := range levels {
			// Snapshots list the best level first; the book keeps it last.
			if sl.Price <= 0 {
				return nil, fmt.Errorf("%s level %d has price %d, not positive", s, i, sl.Price)
			}
			if i > 0 && compareLevel(s)(&level{price: levels[i-1].Price}, sl.Price) <= 0 {
				return nil, fmt.Errorf("%s levels are not strictly ordered best first at price %d", s, sl.Price)
			}
			if len(sl.Orders) == 0 {
				return nil, fmt.Errorf("%s level at price %d has no orders", s, sl.Price)
			}
			lvl := &level{price: sl.Price}
			for j, so := range sl.Orders {
				if err := checkOrder(b, so); err != nil {
					return nil, fmt.Errorf("%s level at price %d: %w", s, sl.Price, err)
				}
				if j > 0 && so.Seq < sl.Orders[j-1].Seq {
					return nil, fmt.Errorf("%s level at price %d: order %s arrived before the order ahead of it", s, sl.Price, strict.Quote(so.ID))
				}
				o := &order{id: so.ID, account: so.Account, side: s, price: sl.Price, qty: so.Qty, remaining: so.Remaining, seq: so.Seq}
				lvl.pushBack(o)
				b.resting[o.id] = o
			}
			*lv = append(*lv, lvl)
		}
		slices.Reverse(*lv)
	}
	if bid, ok := b.best(buy); ok {
		if ask, ok := b.best(sell); ok && bid >= ask {
			return nil, fmt.Errorf("book is crossed: best bid %d, best ask %d", bid, ask)
		}
	}
	return b, nil
}

func checkOrder(b *book, so snapOrder) error {
	switch {
	case so.ID == "":
		return errors.New("an order has an empty id")
	case so.Account == "":
		return fmt.Errorf("order %s has an empty account", strict.Quote(so.ID))
	case so.Qty <= 0:
		return fmt.Errorf("order %s has qty %d, not positive", strict.Quote(so.ID), so.Qty)
	case so.Remaining <= 0 || so.Remaining > so.Qty:
		return fmt.Errorf("order %s has remaining %d, not in 1..%d", strict.Quote(so.ID), so.Remaining, so.Qty)
	}
	if _, ok := b.seen[so.ID]; !ok {
		return fmt.Errorf("order %s is not among the seen ids", strict.Quote(so.ID))
	}
	if _, ok := b.resting[so.ID]; ok {
		return fmt.Errorf("order %s rests twice", strict.Quote(so.ID))
	}
	return nil
}
