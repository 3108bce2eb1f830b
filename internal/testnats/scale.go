package testnats

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/detbus/detbus/transport"
)

// ScaleEvents is the size of the long logs scale tests build:
// DETBUS_SCALE_EVENTS, or 2,000,000 by default.
func ScaleEvents() int {
	if v, err := strconv.Atoi(os.Getenv("DETBUS_SCALE_EVENTS")); err == nil && v > 0 {
		return v
	}
	return 2_000_000
}

// LongLog is a node whose log holds a long history: Total events, of
// which every other one (BigCount) is on the ESK Big, the rest spread
// over Others ESKs named "<Big-prefix>.o<k>" (Big "scale.big": "scale.o0"
// to "scale.o999").
type LongLog struct {
	Server   *transport.Server
	Dir      string
	Big      string
	BigCount uint64
	Total    uint64
	Others   int
}

// BuildLongLog starts a node in dir and writes total events of 128 bytes
// with [Publish]: pipelined JetStream publishes, each acknowledged, as
// plain NATS clients publish them (no headers). Close it with
// [LongLog.Close].
func BuildLongLog(dir string, total int) (*LongLog, error) {
	s, err := transport.StartServer(transport.ServerConfig{Name: "long", Host: "127.0.0.1", Port: -1, StoreDir: dir})
	if err != nil {
		return nil, err
	}
	ll := &LongLog{Server: s, Dir: dir, Big: "scale.big", Others: 1000}
	if err := ll.fill(total); err != nil {
		s.Shutdown()
		return nil, err
	}
	return ll, nil
}

func (ll *LongLog) fill(total int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	l, err := transport.Connect(ctx, ll.Server.ClientURL(), transport.Config{})
	if err != nil {
		return err
	}
	defer l.Close()
	payload := make([]byte, 128)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	big := l.Subject(ll.Big)
	err = Publish(ctx, ll.Server.ClientURL(), total, func(i int) (string, []byte) {
		if i%2 == 1 {
			return l.Subject("scale.o" + strconv.Itoa((i/2)%ll.Others)), payload
		}
		return big, payload
	})
	if err != nil {
		return err
	}
	st, err := l.State(ctx, ll.Big)
	if err != nil {
		return err
	}
	if st.Messages != uint64(total) {
		return fmt.Errorf("the log holds %d events, want %d", st.Messages, total)
	}
	ll.Total, ll.BigCount = st.Messages, st.ESKs[ll.Big]
	return nil
}

// Close stops the node and removes its data.
func (ll *LongLog) Close() {
	ll.Server.Shutdown()
	_ = os.RemoveAll(ll.Dir)
}
