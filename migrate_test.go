package yomo_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
)

// TestSourceMigrates: a Source moves its connection to a new socket while
// it writes; the zipper keeps the same connection (no reconnect), every
// frame arrives once and in order, and the frames after the move leave
// from the new socket.
func TestSourceMigrates(t *testing.T) {
	tz := startZipper(t, "")
	z := tz.Zipper
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	const n = 4000
	var mu sync.Mutex
	var got []uint32
	fn := yomo.NewStreamFunction("fn", "", yomo.WithInMemory(z))
	fn.SetObserveDataTags(1)
	_ = fn.SetHandler(func(c yomo.Context) {
		mu.Lock()
		got = append(got, binary.BigEndian.Uint32(c.Data()))
		mu.Unlock()
	})
	if err := fn.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer fn.Close()
	var changes atomic.Int64
	src := yomo.NewSource("phone", tz.addr, yomo.WithRootCAPEM(z.RootCAPEM()))
	if err := src.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	src.SetStateHandler(func(yomo.StateChange) { changes.Add(1) })

	write := func(from, to int) {
		b := make([]byte, 4)
		for i := from; i < to; i++ {
			binary.BigEndian.PutUint32(b, uint32(i))
			if err := src.Write(1, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(0, n/2)
	newPC, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Migrate(ctx, newPC); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	write(n/2, n)
	if err := src.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == n },
		func() string { mu.Lock(); defer mu.Unlock(); return fmt.Sprintf("%d of %d frames", len(got), n) })
	mu.Lock()
	for i, v := range got {
		if v != uint32(i) {
			mu.Unlock()
			t.Fatalf("frame %d is %d: lost, doubled or out of order", i, v)
		}
	}
	mu.Unlock()
	eventually(t, 5*time.Second, func() bool { return slices.Contains(yomo.RemoteAddrsForTest(z), newPC.LocalAddr().String()) },
		func() string {
			return fmt.Sprintf("the zipper sees the source at %v, not at its new address %v", yomo.RemoteAddrsForTest(z), newPC.LocalAddr())
		})
	if c := changes.Load(); c != 0 || src.State() != yomo.StateConnected {
		t.Fatalf("%d state changes, state %v: the source reconnected", c, src.State())
	}
	if st := z.Stats().Connections; st.Accepted != 2 {
		t.Fatalf("the zipper accepted %d connections, want 2 (the function and the one source connection)", st.Accepted)
	}

	mem := yomo.NewSource("mem", "", yomo.WithInMemory(z))
	if err := mem.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	other, _ := net.ListenPacket("udp", "127.0.0.1:0")
	if err := mem.Migrate(ctx, other); !errors.Is(err, yomo.ErrMigrationUnsupported) {
		t.Fatalf("in-memory Migrate: %v", err)
	}
	// A socket quic-go cannot use is refused, and the connection stays.
	wrapped, _ := net.ListenPacket("udp", "127.0.0.1:0")
	if err := src.Migrate(ctx, struct{ net.PacketConn }{wrapped}); err == nil || src.State() != yomo.StateConnected {
		t.Fatalf("Migrate to a wrapped socket: %v, state %v", err, src.State())
	}
}
