package yomo_test

import (
	"context"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
)

// TestWriteMessageCarriesEveryField: a Message's target, key and metadata
// reach the handler, and what the handler writes carries the frame's key
// and metadata (with its own entries added) back to the origin Source.
func TestWriteMessageCarriesEveryField(t *testing.T) {
	z, err := yomo.NewZipper("msg")
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	type seen struct {
		tag          yomo.Tag
		data, key    string
		trace, extra string
		tid          string
	}
	got := make(chan seen, 4)
	fn := yomo.NewStreamFunction("fn", "", yomo.WithInMemory(z))
	fn.SetObserveDataTags(1, 2)
	fn.SetWantedTarget("t1")
	_ = fn.SetHandler(func(c yomo.Context) {
		mc := c.(yomo.MessageContext)
		tr, _ := c.Metadata("traceparent")
		ex, _ := c.Metadata("extra")
		got <- seen{c.Tag(), string(c.Data()), mc.Key(), tr, ex, mc.TID()}
		if c.Tag() == 1 {
			_ = mc.WriteMessage(yomo.Message{Tag: 2, Data: []byte("result"), Target: "t1", Metadata: map[string]string{"extra": "x"}})
		}
	})
	if err := fn.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer fn.Close()
	src := yomo.NewSource("src", "", yomo.WithInMemory(z))
	if err := src.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	err = src.WriteMessage(yomo.Message{Tag: 1, Data: []byte("in"), Target: "t1", Key: "dev-7",
		Metadata: map[string]string{"traceparent": "00-abc-def-01"}})
	if err != nil {
		t.Fatal(err)
	}
	var first, second seen
	for i, p := range []*seen{&first, &second} {
		select {
		case *p = <-got:
		case <-ctx.Done():
			t.Fatalf("handler call %d did not happen", i+1)
		}
	}
	if first != (seen{1, "in", "dev-7", "00-abc-def-01", "", first.tid}) || first.tid == "" {
		t.Errorf("first frame %+v", first)
	}
	if second != (seen{2, "result", "dev-7", "00-abc-def-01", "x", first.tid}) {
		t.Errorf("result frame %+v: want the origin's key, metadata and transaction, and the extra entry", second)
	}
	// A target nobody wants reaches nobody: the frame is unroutable.
	if err := src.WriteMessage(yomo.Message{Tag: 1, Data: []byte("other"), Target: "t2"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for z.Stats().Unroutable == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a frame for target t2 was not counted unroutable")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case s := <-got:
		t.Fatalf("the t1 instance got %+v", s)
	default:
	}
}
