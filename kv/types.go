package kv

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/detbus/detbus/kv/crdt"
	"github.com/detbus/detbus/transport"
)

// Type is the CRDT type of a table, as declared in the [ConfigTable].
type Type string

// The table types.
const (
	TypeLWW     Type = "lww"     // last-writer-wins register per key
	TypeORSet   Type = "orset"   // add-wins observed-remove set of strings per key
	TypeCounter Type = "counter" // PN-counter per key
	TypeMap     Type = "map"     // add-wins map of fields (registers and counters) per key
	TypeMVReg   Type = "mvreg"   // multi-value register per key
)

// Types lists every table type.
var Types = []Type{TypeLWW, TypeORSet, TypeCounter, TypeMap, TypeMVReg}

// Valid reports whether t is one of [Types].
func (t Type) Valid() bool {
	switch t {
	case TypeLWW, TypeORSet, TypeCounter, TypeMap, TypeMVReg:
		return true
	}
	return false
}

// ParseType returns the Type named s, or an error wrapping [ErrInvalidOp]
// that lists the valid names.
func ParseType(s string) (Type, error) {
	if t := Type(s); t.Valid() {
		return t, nil
	}
	return "", fmt.Errorf("%w: unknown table type %q (want one of lww, orset, counter, map, mvreg)", ErrInvalidOp, s)
}

const (
	// ConfigTable is the table that declares the others: an LWW table
	// whose key is a table name and whose value is {"crdt":"<type>"}.
	ConfigTable = "_config"

	// ESKPrefix is the ESK prefix of tables: table t is ESK "kv.<t>".
	ESKPrefix = "kv."

	// MaxKeyLength is the longest key, field or element, in bytes.
	MaxKeyLength = 1024

	// MaxRejections is how many rejections are kept per table (the
	// newest), and for undeclared tables together.
	MaxRejections = 100
)

// Sentinel errors, wrapped with detail by the calls that return them.
var (
	// ErrNoTable: the table is not declared (in this store's state).
	ErrNoTable = errors.New("kv: no such table")
	// ErrNoKey: the key has never been written in the table.
	ErrNoKey = errors.New("kv: no such key")
	// ErrInvalidOp: an op, key, field, element or table name is malformed.
	ErrInvalidOp = errors.New("kv: invalid op")
	// ErrTableType: the op does not fit the table's type, or a table is
	// declared again with another type.
	ErrTableType = errors.New("kv: wrong table type")
	// ErrClosed: the store is closed.
	ErrClosed = errors.New("kv: store closed")
)

// Op names, the "op" field of an operation.
const (
	OpSet    = "set"
	OpDelete = "delete"
	OpAdd    = "add"
	OpRemove = "remove"
	OpIncr   = "incr"
)

// Op is one operation on a table, as carried by one event on the table's
// ESK. The JSON (and msgpack) field names are those of the struct tags; see
// the package documentation for which fields each op takes.
type Op struct {
	Op      string          `json:"op" msgpack:"op"`
	Key     string          `json:"key" msgpack:"key"`
	Field   string          `json:"field,omitempty" msgpack:"field,omitempty"`
	Value   json.RawMessage `json:"value,omitempty" msgpack:"value,omitempty"`
	Element string          `json:"element,omitempty" msgpack:"element,omitempty"`
	// Delta is a counter's increment; nil means 1.
	Delta  *int64 `json:"delta,omitempty" msgpack:"delta,omitempty"`
	Writer string `json:"writer,omitempty" msgpack:"writer,omitempty"`
	// Observed (orset and map removes) and Context (mvreg sets) list the
	// dots the writer had seen; nil means every dot present at the op's
	// log position.
	Observed []crdt.Dot `json:"observed,omitempty" msgpack:"observed,omitempty"`
	Context  []crdt.Dot `json:"context,omitempty" msgpack:"context,omitempty"`
}

// Int64 returns a pointer to d, for [Op.Delta].
func Int64(d int64) *int64 { return &d }

// TableConfig is the value of a table's declaration in the [ConfigTable].
type TableConfig struct {
	CRDT Type `json:"crdt"`
}

// ValidateTable reports whether name can name a table: a single ESK
// token (so "kv.<name>" is a valid ESK) without dots. [ConfigTable] is
// valid; declaring it is not. Errors wrap [ErrInvalidOp].
func ValidateTable(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty table name", ErrInvalidOp)
	}
	if strings.Contains(name, ".") {
		return fmt.Errorf("%w: table name %q contains a dot; a table is one ESK token", ErrInvalidOp, name)
	}
	if err := transport.ValidateESK(ESKPrefix + name); err != nil {
		return fmt.Errorf("%w: table name %q: %w", ErrInvalidOp, name, err)
	}
	return nil
}

// ValidateKey reports whether k can be a key (what names "key", "field"
// or "element" in errors): non-empty valid UTF-8 of at most
// [MaxKeyLength] bytes. Errors wrap [ErrInvalidOp].
func ValidateKey(what, k string) error {
	switch {
	case k == "":
		return fmt.Errorf("%w: empty %s", ErrInvalidOp, what)
	case len(k) > MaxKeyLength:
		return fmt.Errorf("%w: %s is %d bytes, the limit is %d", ErrInvalidOp, what, len(k), MaxKeyLength)
	case !utf8.ValidString(k):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidOp, what)
	}
	return nil
}

// TableInfo describes a declared table.
type TableInfo struct {
	Name     string `json:"name"`
	Type     Type   `json:"type"`
	Keys     int    `json:"keys"`     // keys that hold a value
	Ops      uint64 `json:"ops"`      // ops applied
	Rejected uint64 `json:"rejected"` // ops rejected
	// Clamped counts the ops whose HLC time lay further than
	// transport.MaxEventSkew from the time the stream stored them: their
	// time is the stored time.
	Clamped  uint64             `json:"clamped"`
	Declared transport.Position `json:"declared"` // the declaring op (zero for ConfigTable)
}

// Value is the state of one key.
type Value struct {
	Table string `json:"table"`
	Key   string `json:"key"`
	Type  Type   `json:"type"`
	// Value is what the CRDT means: an lww table's value, an orset's
	// elements (a JSON array of strings), a counter's total (a JSON
	// number), a map's present fields (an object: a register field's
	// value, a counter field's total), an mvreg's concurrent values (a
	// JSON array). null when the key holds no value.
	Value json.RawMessage `json:"value"`
	// Exists reports whether the key holds a value: an lww key that is
	// not deleted, an orset or map with a present element or field, a
	// counter that was incremented, an mvreg with a value.
	Exists bool `json:"exists"`
	// Meta is the CRDT's whole state, as its deterministic MarshalJSON
	// writes it: timestamps, dots, tags and tombstones. Nil in changes
	// delivered by Watch.
	Meta json.RawMessage `json:"meta,omitempty"`
}

// Rejection is an op that the fold rejected, the same way on every
// replica.
type Rejection struct {
	Position transport.Position `json:"position"`
	Table    string             `json:"table"`
	Reason   string             `json:"reason"`
	Data     []byte             `json:"data"` // the event's payload, truncated to 1 KiB
}

// Change is one op folded into the store, delivered by [Store.Watch]:
// either applied (Value is the key's new state) or rejected (Rejected is
// set).
type Change struct {
	Table    string             `json:"table"`
	Key      string             `json:"key"`
	Position transport.Position `json:"position"`
	Value    Value              `json:"value"`
	Rejected *Rejection         `json:"rejected,omitempty"`
	// Dropped counts the changes this watcher missed just before this one
	// because its buffer was full.
	Dropped uint64 `json:"dropped,omitempty"`
}
