package frame_test

import (
	"bytes"
	"fmt"

	"github.com/yomo-dev/yomo/frame"
)

func Example() {
	// Write a data frame.
	var stream bytes.Buffer
	out := frame.Data{
		Tag:      33,
		Target:   []byte("sfn-1"),
		Metadata: frame.MetadataOf("trace", "ab12"),
		Payload:  []byte("hello"),
	}
	stream.Write(frame.AppendData(nil, &out))

	// Read it back.
	r := frame.NewReader(&stream, frame.DefaultMaxSize)
	t, body, err := r.Next()
	if err != nil {
		panic(err) // a real reader closes the connection
	}
	if t != frame.TypeData {
		panic("not a data frame")
	}
	var in frame.Data
	if err := in.Decode(body); err != nil {
		panic(err)
	}
	trace, _ := in.Metadata.Get("trace")
	fmt.Printf("tag %d, target %s, trace %s: %s\n", in.Tag, in.Target, trace, in.Payload)
	// Output: tag 33, target sfn-1, trace ab12: hello
}

func ExampleDecodeControl() {
	b, err := frame.AppendControl(nil, &frame.Handshake{
		Version:     frame.ProtocolVersion,
		Name:        "noise-filter",
		Kind:        frame.KindFunction,
		ID:          5,
		ObserveTags: []frame.Tag{33},
	})
	if err != nil {
		panic(err)
	}
	t, n, err := frame.ParseHeader(b, frame.DefaultMaxSize)
	if err != nil {
		panic(err)
	}
	v, err := frame.DecodeControl(t, b[frame.HeaderSize:frame.HeaderSize+n])
	if err != nil {
		panic(err)
	}
	h := v.(*frame.Handshake)
	fmt.Println(t, h.Name, h.Kind, h.ObserveTags)
	// Output: handshake noise-filter function [33]
}
