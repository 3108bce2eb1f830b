package ranges

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/detbus/detbus/kv"
	"github.com/detbus/detbus/transport"
)

// DefaultTable is the kv table holding the claims.
const DefaultTable = "ranges"

// ErrInvalidRange is wrapped by errors about malformed ranges.
var ErrInvalidRange = errors.New("ranges: invalid range")

// Range is the keys k with Start <= k < End, byte-wise; an empty End has
// no upper bound and an empty Start no lower one.
type Range struct {
	Start, End string
}

// String returns r as "start..end", the form [ParseRange] reads and the
// table's key.
func (r Range) String() string { return r.Start + ".." + r.End }

// ParseRange reads "start..end". Neither bound may contain "..", and
// start must sort before end unless end is empty. Errors wrap
// [ErrInvalidRange].
func ParseRange(s string) (Range, error) {
	start, end, ok := strings.Cut(s, "..")
	if !ok {
		return Range{}, fmt.Errorf("%w: %q is not start..end", ErrInvalidRange, s)
	}
	r := Range{Start: start, End: end}
	return r, r.Validate()
}

// Validate reports what is wrong with r, wrapping [ErrInvalidRange].
func (r Range) Validate() error {
	switch {
	case strings.Contains(r.Start, "..") || strings.Contains(r.End, ".."):
		return fmt.Errorf("%w: %q: a bound contains \"..\"", ErrInvalidRange, r)
	case r.End != "" && r.Start >= r.End:
		return fmt.Errorf("%w: %q: start does not sort before end", ErrInvalidRange, r)
	}
	return kv.ValidateKey("range", r.String())
}

// Contains reports whether key is in r.
func (r Range) Contains(key string) bool {
	return r.Start <= key && (r.End == "" || key < r.End)
}

// compare orders ranges by start, then end (an empty end last).
func (r Range) compare(o Range) int {
	if c := strings.Compare(r.Start, o.Start); c != 0 {
		return c
	}
	switch {
	case r.End == o.End:
		return 0
	case r.End == "":
		return 1
	case o.End == "":
		return -1
	}
	return strings.Compare(r.End, o.End)
}

// Claim is a node's present claim on a range.
type Claim struct {
	Node     string `json:"node"`
	Priority int64  `json:"priority"`
}

// Ownership is who owns a range, and every present claim on it.
type Ownership struct {
	Range    Range   `json:"range"`
	Owner    string  `json:"owner"`
	Priority int64   `json:"priority"`
	Claims   []Claim `json:"claims"` // the owner's first, then by priority and node
}

// Decide works out the ownership of r from its present claims: the claim
// with the highest priority wins, and among equal priorities the node
// name that sorts first. It is a pure function of the set of claims.
func Decide(r Range, claims []Claim) Ownership {
	cs := slices.Clone(claims)
	slices.SortFunc(cs, func(a, b Claim) int {
		switch {
		case a.Priority > b.Priority:
			return -1
		case a.Priority < b.Priority:
			return 1
		}
		return strings.Compare(a.Node, b.Node)
	})
	o := Ownership{Range: r, Claims: cs}
	if len(cs) > 0 {
		o.Owner, o.Priority = cs[0].Node, cs[0].Priority
	}
	return o
}

// Registry registers and releases one node's claims, and reads everyone's,
// on a kv store. It is safe for concurrent use.
type Registry struct {
	store *kv.Store
	table string
}

// Open declares table (DefaultTable if "") as a map table, unless it is
// already, and returns a registry on it.
//
// Errors: kv.ErrTableType when the table is declared with another type,
// and the store's errors.
func Open(ctx context.Context, store *kv.Store, table string) (*Registry, error) {
	if table == "" {
		table = DefaultTable
	}
	if err := store.Sync(ctx); err != nil {
		return nil, err
	}
	if info, ok := store.Table(table); ok {
		if info.Type != kv.TypeMap {
			return nil, fmt.Errorf("%w: ranges: table %q is %s, not map", kv.ErrTableType, table, info.Type)
		}
	} else if _, err := store.CreateTable(ctx, table, kv.TypeMap); err != nil {
		return nil, err
	}
	return &Registry{store: store, table: table}, nil
}

// Register sets node's priority for r and makes its claim present: it
// adds to the claim's counter the difference between priority and the
// counter's total, which a released claim keeps. It returns once this
// replica has applied the write.
func (g *Registry) Register(ctx context.Context, node string, r Range, priority int64) (transport.Position, error) {
	if err := r.Validate(); err != nil {
		return transport.Position{}, err
	}
	total, err := g.total(r, node)
	if err != nil {
		return transport.Position{}, err
	}
	return g.store.IncrField(ctx, g.table, r.String(), node, priority-total)
}

// Release removes node's claim on r (every registration of it this
// replica has applied; a registration it had not seen stays). It returns
// once this replica has applied the write.
func (g *Registry) Release(ctx context.Context, node string, r Range) (transport.Position, error) {
	if err := r.Validate(); err != nil {
		return transport.Position{}, err
	}
	return g.store.RemoveField(ctx, g.table, r.String(), node)
}

// total returns the total of node's counter on r, present or released,
// from the map's state.
func (g *Registry) total(r Range, node string) (int64, error) {
	v, err := g.store.Get(g.table, r.String())
	if errors.Is(err, kv.ErrNoKey) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	// The map's state, as crdt.Map encodes it: each field's counter with
	// every op's delta.
	var state struct {
		Keys []struct {
			Key     string `json:"key"`
			Counter *struct {
				Writers []struct {
					Ops []struct {
						Delta int64 `json:"delta"`
					} `json:"ops"`
				} `json:"writers"`
			} `json:"counter"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(v.Meta, &state); err != nil {
		return 0, fmt.Errorf("ranges: read the claims on %s: %w", r, err)
	}
	var total int64
	for _, k := range state.Keys {
		if k.Key != node || k.Counter == nil {
			continue
		}
		for _, w := range k.Counter.Writers {
			for _, op := range w.Ops {
				total += op.Delta
			}
		}
	}
	return total, nil
}

// Owners returns the ownership of every range with a present claim,
// ordered by range, from this replica's state.
func (g *Registry) Owners() ([]Ownership, error) {
	keys, _, err := g.store.Keys(g.table, "", 0)
	if err != nil {
		return nil, err
	}
	var out []Ownership
	for _, k := range keys {
		r, err := ParseRange(k)
		if err != nil {
			continue // not written by this package; no owner
		}
		v, err := g.store.Get(g.table, k)
		if err != nil {
			return nil, err
		}
		var fields map[string]int64
		if err := json.Unmarshal(v.Value, &fields); err != nil {
			continue // a field that is not a counter: not a claim
		}
		claims := make([]Claim, 0, len(fields))
		for node, p := range fields {
			claims = append(claims, Claim{Node: node, Priority: p})
		}
		if len(claims) > 0 {
			out = append(out, Decide(r, claims))
		}
	}
	slices.SortFunc(out, func(a, b Ownership) int { return a.Range.compare(b.Range) })
	return out, nil
}

// OwnerOf returns the ownership of the most specific claimed range that
// contains key (the greatest start, then the smallest end), and false if
// no claimed range contains it.
func (g *Registry) OwnerOf(key string) (Ownership, bool, error) {
	owners, err := g.Owners()
	if err != nil {
		return Ownership{}, false, err
	}
	var best Ownership
	found := false
	for _, o := range owners {
		if !o.Range.Contains(key) {
			continue
		}
		if !found || o.Range.Start > best.Range.Start || (o.Range.Start == best.Range.Start && o.Range.compare(best.Range) < 0) {
			best, found = o, true
		}
	}
	return best, found, nil
}
