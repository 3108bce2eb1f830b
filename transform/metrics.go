package transform

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Metric names, with attributes detbus.transform and detbus.instance.
const (
	MetricInputs           = "detbus.transform.inputs"            // inputs applied
	MetricWon              = "detbus.transform.outputs.won"       // outputs this instance wrote
	MetricLost             = "detbus.transform.outputs.lost"      // outputs found written, equal
	MetricBatches          = "detbus.transform.batches"           // atomic batches of outputs this instance wrote
	MetricRejections       = "detbus.transform.rejections"        // inputs whose step failed
	MetricShadowMatches    = "detbus.transform.shadow.matches"    // a shadow's outputs equal to the landed ones
	MetricShadowMismatches = "detbus.transform.shadow.mismatches" // a shadow's outputs that differ from the landed ones
	MetricDivergences      = "detbus.transform.divergences"       // outputs or snapshots that differed
	MetricLag              = "detbus.transform.lag"               // stream positions between the last input applied and the newest input
	MetricSnapshotAge      = "detbus.transform.snapshot.age"      // seconds since the last snapshot saved
)

// instruments returns the runners' instruments from the global meter
// provider, made again when another provider was installed since: the
// counters then start from zero in the new provider, and the running
// runners move to it.
func instruments() *runnerInstruments {
	current.mu.Lock()
	defer current.mu.Unlock()
	return instrumentsLocked()
}

// track adds r to the runners whose gauges are observed, untrack removes
// it; under current.mu, so that a new provider moves every runner.
func track(r *Runner) {
	current.mu.Lock()
	defer current.mu.Unlock()
	instrumentsLocked().add(r)
}

func untrack(r *Runner) {
	current.mu.Lock()
	defer current.mu.Unlock()
	instrumentsLocked().remove(r)
}

func instrumentsLocked() *runnerInstruments {
	mp := otel.GetMeterProvider()
	if ri := current.ri; ri != nil && current.mp == mp {
		return ri
	}
	ri := newInstruments(mp)
	if old := current.ri; old != nil {
		old.mu.Lock()
		ri.runners, old.runners = old.runners, nil
		old.mu.Unlock()
		if old.registration != nil {
			_ = old.registration.Unregister()
		}
	}
	current.mp, current.ri = mp, ri
	return ri
}

var current struct {
	mu sync.Mutex
	mp metric.MeterProvider
	ri *runnerInstruments
}

func newInstruments(mp metric.MeterProvider) *runnerInstruments {
	m := mp.Meter("github.com/detbus/detbus/transform")
	ri := &runnerInstruments{}
	ri.inputs, _ = m.Int64Counter(MetricInputs, metric.WithDescription("inputs applied"))
	ri.won, _ = m.Int64Counter(MetricWon, metric.WithDescription("outputs this instance wrote"))
	ri.lost, _ = m.Int64Counter(MetricLost, metric.WithDescription("outputs another instance wrote first, equal to this one's"))
	ri.batches, _ = m.Int64Counter(MetricBatches, metric.WithDescription("atomic batches of outputs this instance wrote"))
	ri.shadowMatches, _ = m.Int64Counter(MetricShadowMatches, metric.WithDescription("outputs a shadow computed equal to the ones that landed"))
	ri.shadowMismatches, _ = m.Int64Counter(MetricShadowMismatches, metric.WithDescription("outputs a shadow computed that differ from the ones that landed"))
	ri.rejections, _ = m.Int64Counter(MetricRejections, metric.WithDescription("inputs whose step returned an error"))
	ri.divergences, _ = m.Int64Counter(MetricDivergences, metric.WithDescription("outputs or snapshots that differed from this instance's"))
	ri.lag, _ = m.Int64ObservableGauge(MetricLag, metric.WithDescription("stream positions between the last input applied and the newest of the transform's inputs"))
	ri.snapAge, _ = m.Float64ObservableGauge(MetricSnapshotAge, metric.WithUnit("s"), metric.WithDescription("seconds since this instance last saved a snapshot"))
	ri.registration, _ = m.RegisterCallback(ri.observe, ri.lag, ri.snapAge)
	return ri
}

type runnerInstruments struct {
	inputs, won, lost, batches, rejections, divergences metric.Int64Counter
	shadowMatches, shadowMismatches                     metric.Int64Counter
	lag                                                 metric.Int64ObservableGauge
	snapAge                                             metric.Float64ObservableGauge
	registration                                        metric.Registration

	mu      sync.Mutex
	runners map[*Runner]struct{}
}

func (ri *runnerInstruments) add(r *Runner) {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	if ri.runners == nil {
		ri.runners = map[*Runner]struct{}{}
	}
	ri.runners[r] = struct{}{}
}

func (ri *runnerInstruments) remove(r *Runner) {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	delete(ri.runners, r)
}

func (ri *runnerInstruments) observe(_ context.Context, o metric.Observer) error {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	for r := range ri.runners {
		st := r.Status()
		attrs := metric.WithAttributes(r.attrs...)
		o.ObserveInt64(ri.lag, int64(st.Lag), attrs)
		if !st.LastSnapshot.IsZero() {
			o.ObserveFloat64(ri.snapAge, time.Since(st.LastSnapshot).Seconds(), attrs)
		}
	}
	return nil
}

func runnerAttrs(cfg Config) []attribute.KeyValue {
	return []attribute.KeyValue{attribute.String("detbus.transform", cfg.Spec.Name), attribute.String("detbus.instance", cfg.Instance)}
}
