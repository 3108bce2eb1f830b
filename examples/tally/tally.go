// Package tally is a deterministic transform as a user writes one in
// their own module: stock movements in, running stock levels out. Its
// worker, in ./worker, is the whole program that runs it in production:
// one call to worker.Main.
//
// Inputs are events on "tally.moves.<warehouse>": {"item":"bolt","qty":5}
// (negative to take out). Each yields one output on "tally.levels":
// {"warehouse":"w1","item":"bolt","level":12}. A move that would take the
// level below zero is rejected (the runner records it on
// "tally.levels.rejected").
package tally

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/detbus/detbus/transform"
)

// Spec is the tally DET.
func Spec() transform.Spec {
	return transform.Spec{Name: "tally", Version: "1", Inputs: []string{"tally.moves.*"}, Output: "tally.levels",
		New: func() transform.Transform { return New() }}
}

// Tally holds the stock level of every item in every warehouse.
type Tally struct {
	Levels map[string]map[string]int64 `json:"levels"`
}

// New returns an empty tally.
func New() *Tally { return &Tally{Levels: map[string]map[string]int64{}} }

// Move is an input.
type Move struct {
	Item string `json:"item"`
	Qty  int64  `json:"qty"`
}

// Level is an output.
type Level struct {
	Warehouse string `json:"warehouse"`
	Item      string `json:"item"`
	Level     int64  `json:"level"`
}

// Step applies one move.
func (t *Tally) Step(_ *transform.Context, in transform.Input) ([][]byte, error) {
	var m Move
	if err := in.Decode(&m); err != nil {
		return nil, err
	}
	if m.Item == "" {
		return nil, fmt.Errorf("a move names no item")
	}
	wh := in.ESK[strings.LastIndexByte(in.ESK, '.')+1:]
	level := t.Levels[wh][m.Item] + m.Qty
	if level < 0 {
		return nil, fmt.Errorf("%s in %s: %d in stock, %d asked", m.Item, wh, level-m.Qty, -m.Qty)
	}
	if t.Levels[wh] == nil {
		t.Levels[wh] = map[string]int64{}
	}
	t.Levels[wh][m.Item] = level
	return [][]byte{transform.JSON(Level{Warehouse: wh, Item: m.Item, Level: level})}, nil
}

// Snapshot encodes the levels.
func (t *Tally) Snapshot() ([]byte, error) { return json.Marshal(t) }

// Restore decodes them.
func (t *Tally) Restore(b []byte) error {
	*t = Tally{}
	if err := json.Unmarshal(b, t); err != nil {
		return err
	}
	if t.Levels == nil {
		t.Levels = map[string]map[string]int64{}
	}
	return nil
}
