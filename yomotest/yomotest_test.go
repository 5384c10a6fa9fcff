package yomotest_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/yomotest"
)

func upper(c yomo.Context) {
	b := make([]byte, len(c.Data()))
	for i, x := range c.Data() {
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		b[i] = x
	}
	_ = c.Write(c.Tag()+1, b)
}

func ExampleNewContext() {
	c := yomotest.NewContext(yomo.Message{Tag: 0x10, Data: []byte("hello")})
	upper(c)
	for _, m := range c.Written() {
		fmt.Printf("tag %#x: %s\n", m.Tag, m.Data)
	}
	// Output: tag 0x11: HELLO
}

func TestContextCarriesFrameAndRecords(t *testing.T) {
	in := yomo.Message{Tag: 7, Data: []byte("x"), Key: "dev-1", Metadata: map[string]string{"traceparent": "00-a-b-01"}}
	c := yomotest.NewContext(in)
	in.Data[0] = 'y' // the context copied it
	if string(c.Data()) != "x" || c.Tag() != 7 || c.Key() != "dev-1" {
		t.Fatalf("frame: tag %d data %q key %q", c.Tag(), c.Data(), c.Key())
	}
	if v, ok := c.Metadata("traceparent"); !ok || v != "00-a-b-01" {
		t.Fatalf("metadata %q %v", v, ok)
	}
	var h yomo.Handler = func(ctx yomo.Context) {
		mc := ctx.(yomo.MessageContext)
		_ = ctx.WriteWithTarget(8, []byte("a"), "t1")
		_ = mc.WriteMessage(yomo.Message{Tag: 9, Data: []byte("b"), Key: "dev-2", Metadata: map[string]string{"k": "v"}})
	}
	h(c)
	got := c.Written()
	if len(got) != 2 {
		t.Fatalf("wrote %+v", got)
	}
	if got[0].Tag != 8 || string(got[0].Data) != "a" || got[0].Target != "t1" || got[0].Key != "dev-1" ||
		got[0].Metadata["traceparent"] != "00-a-b-01" {
		t.Errorf("first write %+v: want tag 8, target t1, the frame's key and metadata", got[0])
	}
	if got[1].Key != "dev-2" || got[1].Metadata["k"] != "v" || got[1].Metadata["traceparent"] != "00-a-b-01" {
		t.Errorf("second write %+v: want its own key, its entry added to the frame's metadata", got[1])
	}
}

func TestFailWrites(t *testing.T) {
	c := yomotest.NewContext(yomo.Message{Tag: 1})
	c.FailWrites(yomotest.ErrWrite)
	if err := c.Write(2, nil); !errors.Is(err, yomotest.ErrWrite) {
		t.Fatalf("write: %v", err)
	}
	c.FailWrites(nil)
	if err := c.Write(2, nil); err != nil || len(c.Written()) != 1 {
		t.Fatalf("write: %v, written %d", err, len(c.Written()))
	}
}
