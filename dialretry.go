package yomo

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/yomo-dev/yomo/internal/transport"
)

// Retries of a QUIC dial that the server refused (CONNECTION_REFUSED,
// transport.ErrRefused): quic-go refuses when its accept queue is full or
// its listener is closing, which says nothing about the client, so Connect
// tries again, within its context, before it reports the error. The waits
// double from refusedFirstWait (with jitter, so that a refused burst does
// not come back at once): at most about 1.3 s in all.
const (
	refusedRetries   = 7
	refusedFirstWait = 10 * time.Millisecond
)

// dialRetryRefused calls dial until it succeeds, fails with anything but a
// refusal, ctx ends or the retries are used up; it returns dial's last
// result.
func dialRetryRefused(ctx context.Context, dial func() (transport.Conn, error)) (transport.Conn, error) {
	wait := refusedFirstWait
	for i := 0; ; i++ {
		tc, err := dial()
		if err == nil || i == refusedRetries || !errors.Is(err, transport.ErrRefused) {
			return tc, err
		}
		t := time.NewTimer(wait/2 + rand.N(wait))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
		wait *= 2
	}
}
