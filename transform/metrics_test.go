package transform_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/detbus/detbus/internal/testnats"
	"github.com/detbus/detbus/transform"
	"github.com/detbus/detbus/transport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// TestMetrics: two racing instances report inputs, won and lost outputs,
// lag and snapshot age per instance through OpenTelemetry; twice, each
// time to a newly installed meter provider, which the instruments follow.
func TestMetrics(t *testing.T) {
	for round := range 2 {
		t.Run(fmt.Sprint("provider ", round+1), testMetrics)
	}
}

func testMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	otel.SetMeterProvider(mp)
	t.Cleanup(func() { mp.Shutdown(context.Background()) })

	s := testnats.Node(t)
	url := s.ClientURL()
	l := testnats.Log(t, url, transport.Config{})
	store, err := transform.OpenSnapshotStore(ctxT(t), l, "")
	if err != nil {
		t.Fatal(err)
	}
	writeInputs(t, l, 0, 60)
	spec := sumSpec("met", "met.out")
	a := start(t, url, transform.Config{Spec: spec, Instance: "a", Snapshots: store, SnapshotEvery: 10, StatusInterval: 50 * time.Millisecond})
	b := start(t, url, transform.Config{Spec: spec, Instance: "b", Snapshots: store, SnapshotEvery: 10, StatusInterval: 50 * time.Millisecond})
	want, rejected := expected(60)
	for _, in := range []*instance{a, b} {
		testnats.WaitFor(t, 30*time.Second, "instance done", func() error {
			if st := in.r.Status(); st.Won+st.Lost != want+rejected {
				return fmt.Errorf("won %d lost %d", st.Won, st.Lost)
			}
			return nil
		})
	}
	var lagSeen, snapSeen bool
	testnats.WaitFor(t, 10*time.Second, "metrics", func() error {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			return err
		}
		sums := map[string]map[string]int64{} // metric -> instance -> value
		lagSeen, snapSeen = false, false
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				switch d := m.Data.(type) {
				case metricdata.Sum[int64]:
					for _, dp := range d.DataPoints {
						if name(dp.Attributes, "detbus.transform") != "met" {
							continue
						}
						if sums[m.Name] == nil {
							sums[m.Name] = map[string]int64{}
						}
						sums[m.Name][name(dp.Attributes, "detbus.instance")] += dp.Value
					}
				case metricdata.Gauge[int64]:
					if m.Name == transform.MetricLag && len(d.DataPoints) > 0 {
						lagSeen = true
					}
				case metricdata.Gauge[float64]:
					if m.Name == transform.MetricSnapshotAge && len(d.DataPoints) > 0 {
						snapSeen = true
					}
				}
			}
		}
		won := sums[transform.MetricWon]["a"] + sums[transform.MetricWon]["b"]
		if won != int64(want+rejected) {
			return fmt.Errorf("won in all %d, want %d (%v)", won, want+rejected, sums)
		}
		for _, inst := range []string{"a", "b"} {
			if sums[transform.MetricInputs][inst] != 60 || sums[transform.MetricWon][inst]+sums[transform.MetricLost][inst] != int64(want+rejected) ||
				sums[transform.MetricRejections][inst] != int64(rejected) {
				return fmt.Errorf("instance %s: %v", inst, sums)
			}
		}
		if !lagSeen || !snapSeen {
			return fmt.Errorf("gauges seen: lag %v, snapshot age %v", lagSeen, snapSeen)
		}
		return nil
	})
}

func name(set attribute.Set, key string) string {
	v, _ := set.Value(attribute.Key(key))
	return v.AsString()
}
