package frame

import (
	"fmt"
	"reflect"
)

// Type is the one-byte type of a frame, the first byte of its header.
type Type uint8

// Frame types. Values never change once released; see spec.md. Everything
// else the package knows about a type is in its entry of the types table
// below.
const (
	TypeHandshake    Type = 0x01 // client -> zipper, first frame on the control stream
	TypeHandshakeAck Type = 0x02 // zipper -> client, the handshake was accepted
	TypeRejected     Type = 0x03 // zipper -> client, the handshake was refused; final
	TypeData         Type = 0x04 // either way, on data streams: tagged payload
	TypeGoAway       Type = 0x05 // zipper -> client: reconnect (elsewhere or later)
	TypePing         Type = 0x06 // either way, on the control stream
	TypePong         Type = 0x07 // answer to a ping, echoing its value
	TypeDropped      Type = 0x08 // zipper -> function: frames for it were dropped
	TypeRoutes       Type = 0x09 // zipper <-> zipper: route advertisements
	TypeSubscribe    Type = 0x0a // client -> zipper: new observed tags and target
	TypeSubscribed   Type = 0x0b // zipper -> client: a Subscribe took effect (or why not)
	TypeFlush        Type = 0x0c // client -> zipper: tell me when you have read N data frames
	TypeFlushed      Type = 0x0d // zipper -> client: I have read N data frames
	TypeCustody      Type = 0x0e // zipper -> zipper or client: I have taken your first N data frames
	TypeBody         Type = 0x0f // first frame of a body stream: the body's tag, target, key, metadata
	TypeBodies       Type = 0x10 // source -> zipper: body streams follow (when the HandshakeAck asked for it)
	TypeDataStream   Type = 0x11 // client -> zipper: the data stream follows (when the HandshakeAck asked for it)
)

// streamKind is the kind of stream a frame type travels on.
type streamKind uint8

const (
	controlStream streamKind = iota + 1 // the control stream; the body is a msgpack map
	dataStream                          // a data stream; the body is the compact data encoding
	bodyStream                          // a body stream, first and only frame; the compact data encoding without payload
)

// descriptor is all the package knows about one frame type. The type's
// name, whether it is known, the body limit ParseHeader applies, the value
// DecodeControl decodes into, the range of every integer field of the body
// and the value-to-type mapping of AppendControl derive from it; spec.md's
// table of frame types is checked against it by TestSpecTables.
type descriptor struct {
	// name is Type.String: lower case, words joined by "-". spec.md names
	// the type in CamelCase ("handshake-ack" is HandshakeAck).
	name string
	// stream is the stream the type may appear on. A receiver that finds
	// it on another stream closes the connection (protocol error).
	stream streamKind
	// from says who sends it, as spec.md's table of frame types does.
	from string
	// maxBody is the largest body length; 0 means the data limit the
	// receiver was given (ParseHeader's max).
	maxBody int
	// newValue returns a new value (a pointer to a struct with msgpack
	// tags) to decode a control frame's body into; nil for data frames,
	// whose codec is hand-written (data.go).
	newValue func() any
	// fields gives the range of every integer field of the body; set by
	// init from newValue's struct.
	fields mapSchema
}

// types holds the descriptor of every frame type, indexed by Type; an
// entry without a name is not a frame type.
var types = [...]descriptor{
	TypeHandshake: {name: "handshake", stream: controlStream, from: "client → zipper", maxBody: MaxControlSize,
		newValue: func() any { return new(Handshake) }},
	TypeHandshakeAck: {name: "handshake-ack", stream: controlStream, from: "zipper → client", maxBody: MaxControlSize,
		newValue: func() any { return new(HandshakeAck) }},
	TypeRejected: {name: "rejected", stream: controlStream, from: "zipper → client", maxBody: MaxControlSize,
		newValue: func() any { return new(Rejected) }},
	TypeData: {name: "data", stream: dataStream, from: "either direction"},
	TypeGoAway: {name: "goaway", stream: controlStream, from: "zipper → client", maxBody: MaxControlSize,
		newValue: func() any { return new(GoAway) }},
	TypePing: {name: "ping", stream: controlStream, from: "either direction", maxBody: MaxControlSize,
		newValue: func() any { return new(Ping) }},
	TypePong: {name: "pong", stream: controlStream, from: "either direction", maxBody: MaxControlSize,
		newValue: func() any { return new(Ping) }},
	TypeDropped: {name: "dropped", stream: controlStream, from: "zipper → function", maxBody: MaxControlSize,
		newValue: func() any { return new(Dropped) }},
	TypeRoutes: {name: "routes", stream: controlStream, from: "zipper ↔ zipper", maxBody: MaxControlSize,
		newValue: func() any { return new(RouteUpdate) }},
	TypeSubscribe: {name: "subscribe", stream: controlStream, from: "client → zipper", maxBody: MaxControlSize,
		newValue: func() any { return new(Subscribe) }},
	TypeSubscribed: {name: "subscribed", stream: controlStream, from: "zipper → client", maxBody: MaxControlSize,
		newValue: func() any { return new(Subscribed) }},
	TypeFlush: {name: "flush", stream: controlStream, from: "client → zipper", maxBody: MaxControlSize,
		newValue: func() any { return new(Flush) }},
	TypeFlushed: {name: "flushed", stream: controlStream, from: "zipper → client", maxBody: MaxControlSize,
		newValue: func() any { return new(Flushed) }},
	TypeCustody: {name: "custody", stream: controlStream, from: "zipper → zipper or client", maxBody: MaxControlSize,
		newValue: func() any { return new(Custody) }},
	TypeBody: {name: "body", stream: bodyStream, from: "opener → acceptor", maxBody: MaxEnvelope},
	TypeBodies: {name: "bodies", stream: controlStream, from: "source → zipper", maxBody: MaxControlSize,
		newValue: func() any { return new(Bodies) }},
	TypeDataStream: {name: "data-stream", stream: controlStream, from: "either direction", maxBody: MaxControlSize,
		newValue: func() any { return new(DataStream) }},
}

// typeOfValue maps the Go type of a control value to the frame type
// AppendControl writes it as: the first type of the table decoding into
// it (*Ping is a ping; AppendPing writes pongs).
var typeOfValue = make(map[reflect.Type]Type)

func init() {
	for t := range types {
		d := &types[t]
		if d.newValue == nil {
			continue
		}
		rt := reflect.TypeOf(d.newValue())
		d.fields = schemaOf(rt.Elem())
		if _, dup := typeOfValue[rt]; !dup {
			typeOfValue[rt] = Type(t)
		}
	}
}

// describe returns the descriptor of t, or nil when t is not a frame type.
func describe(t Type) *descriptor {
	if int(t) < len(types) && types[t].name != "" {
		return &types[t]
	}
	return nil
}

// limit returns the largest body length of a frame of this type, given
// the receiver's limit on data frames.
func (d *descriptor) limit(dataMax int) int {
	if d.maxBody == 0 {
		return dataMax
	}
	return d.maxBody
}

// String returns the lower-case name of t, or "type(0xNN)" for an unknown
// type.
func (t Type) String() string {
	if d := describe(t); d != nil {
		return d.name
	}
	return fmt.Sprintf("type(0x%02x)", uint8(t))
}

// Known reports whether t is a frame type of this protocol version.
func (t Type) Known() bool { return describe(t) != nil }
