package frame

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
)

// ClientKind says what a connecting client is.
type ClientKind uint8

// Client kinds.
const (
	KindSource   ClientKind = 1 // writes data frames
	KindFunction ClientKind = 2 // a stream function: observes tags, may write back
	KindZipper   ClientKind = 3 // another zipper (mesh link)
)

// String returns the lower-case name of k, or "kind(N)" for an unknown
// kind.
func (k ClientKind) String() string {
	switch k {
	case KindSource:
		return "source"
	case KindFunction:
		return "function"
	case KindZipper:
		return "zipper"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Handshake is the first frame a client sends on its control stream.
type Handshake struct {
	// Version is the protocol version the client speaks (ProtocolVersion).
	Version uint32 `msgpack:"version"`
	// Name is the client's application name.
	Name string `msgpack:"name"`
	// Kind says whether the client is a source, a function or a zipper.
	Kind ClientKind `msgpack:"kind"`
	// ID is the client's own instance id, stable across its reconnects;
	// backflow addresses a Source by it.
	ID uint64 `msgpack:"id"`
	// ObserveTags lists the tags a function wants to receive.
	ObserveTags []Tag `msgpack:"tags,omitempty"`
	// WantedTarget is a function's target: data frames whose Target is not
	// empty reach only the functions whose WantedTarget equals it; frames
	// without a target may reach any function observing their tag.
	WantedTarget string `msgpack:"target,omitempty"`
	// Credential authenticates the client; its form is defined by the
	// zipper's authentication, not by this package.
	Credential string `msgpack:"credential,omitempty"`
	// MaxFrameSize is the largest data frame body the client accepts
	// (0: DefaultMaxSize); the zipper drops larger frames for it.
	MaxFrameSize uint32 `msgpack:"max_frame,omitempty"`
	// Resumed says the client was connected before (to this zipper or
	// another) and is reconnecting. A zipper that has just started holds
	// what such a client writes for a moment when nothing observes it yet,
	// since the functions are probably reconnecting too.
	Resumed bool `msgpack:"resumed,omitempty"`
	// Broadcast says this function instance receives every frame of its
	// tags rather than sharing them with the other instances of its name.
	Broadcast bool `msgpack:"broadcast,omitempty"`
	// Custody says the client keeps every data frame it writes until the
	// zipper's Custody frames cover it, and sends again, on its next
	// connection, those they did not: the zipper acknowledges its frames
	// and drops those it had routed already.
	Custody bool `msgpack:"custody,omitempty"`
	// Acked is, with Custody, the number of the client's data frames that
	// Custody frames on its earlier connections covered: the first data
	// frame on this connection is its frame number Acked+1.
	Acked uint64 `msgpack:"acked,omitempty"`
	// AnnouncesBodies says the client, a source, sends a Bodies frame
	// before the first body stream it opens on this connection when the
	// zipper asks for one (HandshakeAck.AnnounceBodies). Clients that do
	// not set it have their body streams accepted from the start.
	AnnouncesBodies bool `msgpack:"announces_bodies,omitempty"`
	// AnnouncesData says the client, a source or a function, sends a
	// DataStream frame before it opens its data stream on this connection
	// when the zipper asks for one (HandshakeAck.AnnounceData). Clients
	// that do not set it have their data stream accepted from the start.
	AnnouncesData bool `msgpack:"announces_data,omitempty"`
	// NoDatagrams says the client, a source or a function, sends no
	// DATAGRAM frames on this connection: the zipper does not read them.
	// Absent or false: the client may send datagrams and the zipper reads
	// them from the start.
	NoDatagrams bool `msgpack:"no_datagrams,omitempty"`
	// AnnounceData asks the zipper to send a DataStream frame before the
	// first byte or the FIN of its data stream to the client, a source or
	// a function (HandshakeAck.AnnouncesData): the client accepts that
	// stream only once the frame came. Absent or false: the client accepts
	// the zipper's data stream from the start.
	AnnounceData bool `msgpack:"announce_data,omitempty"`
}

// HandshakeAck accepts a handshake.
type HandshakeAck struct {
	ConnID uint64 `msgpack:"conn_id"` // the id the zipper assigned to this connection
	Zipper string `msgpack:"zipper"`  // the zipper's name
	// MaxFrameSize is the largest data frame body, in bytes, the zipper
	// accepts from this client.
	MaxFrameSize uint32 `msgpack:"max_frame"`
	// Custody answers a handshake's Custody: the zipper acknowledges the
	// client's data frames with Custody frames and drops those it routed
	// already. When it is false the client gets no Custody frames and
	// keeps nothing once written.
	Custody bool `msgpack:"custody,omitempty"`
	// AnnounceBodies answers a source's AnnouncesBodies: the zipper
	// accepts the source's body streams only once its Bodies frame came.
	// When it is false the source sends no Bodies frame.
	AnnounceBodies bool `msgpack:"announce_bodies,omitempty"`
	// AnnounceData answers a client's AnnouncesData: the zipper accepts
	// the client's data stream only once its DataStream frame came. When
	// it is false the client sends no DataStream frame.
	AnnounceData bool `msgpack:"announce_data,omitempty"`
	// AnnouncesData answers a client's AnnounceData: the zipper sends a
	// DataStream frame before the first byte or the FIN of its data
	// stream to the client. When it is false the zipper sends none, and
	// the client accepts the zipper's data stream from the start.
	AnnouncesData bool `msgpack:"announces_data,omitempty"`
}

// Bodies tells the zipper that the source, whose handshake said
// AnnouncesBodies and whose HandshakeAck said AnnounceBodies, opens body
// streams from now on. It is sent at most once per connection, before the
// first body stream; it has no fields. Until it comes the zipper does not
// accept the source's body streams, so that an idle source costs no
// goroutine waiting for them.
type Bodies struct{}

// DataStream tells the peer that the sender opens its data stream now. A
// client sends it when its handshake said AnnouncesData and its
// HandshakeAck said AnnounceData; the zipper, when the client's handshake
// said AnnounceData and its HandshakeAck said AnnouncesData. It is sent
// once per connection and direction, before the first byte or the FIN of
// the data stream; it has no fields. Until it comes the receiver does not
// accept the sender's data stream, so that a peer that has not written
// costs no goroutine waiting for it.
type DataStream struct{}

// Rejected refuses a handshake. It is final: the client must not retry.
type Rejected struct {
	Code   uint16 `msgpack:"code"`   // a RejectCode: one of the Reject* codes
	Reason string `msgpack:"reason"` // human-readable detail
}

// GoAway asks a client to reconnect (to another zipper, or to this one
// once it is back). No frame follows it on the control stream.
type GoAway struct {
	Reason string `msgpack:"reason"` // human-readable detail
}

// Dropped tells a function that the zipper dropped frames meant for it
// (its queue was full, or they were lost with a broken connection). The
// zipper sends it on the control stream, coalesced while drops go on.
type Dropped struct {
	Count uint64 `msgpack:"count"` // frames dropped since the previous Dropped
	Total uint64 `msgpack:"total"` // frames dropped for this connection so far
}

// Subscribe replaces, on a connected client, the tags it observes and its
// wanted target, as its handshake set them. The zipper answers with
// Subscribed carrying the same Seq.
type Subscribe struct {
	Seq          uint64 `msgpack:"seq"`
	ObserveTags  []Tag  `msgpack:"tags,omitempty"`
	WantedTarget string `msgpack:"target,omitempty"`
}

// Subscribed answers a Subscribe: it took effect for every frame the
// zipper routes from now on, or, when Error is set, it was refused and the
// previous subscription holds.
type Subscribed struct {
	Seq   uint64 `msgpack:"seq"`
	Error string `msgpack:"error,omitempty"`
}

// Flush asks the zipper to answer, with a Flushed of the same Frames, once
// it has read that many data frames from this connection's data stream.
type Flush struct {
	Frames uint64 `msgpack:"frames"`
}

// Flushed answers a Flush.
type Flushed struct {
	Frames uint64 `msgpack:"frames"`
}

// Custody tells a mesh peer, or a client whose handshake asked for
// custody, that the first Frames data frames of its data stream on this
// connection are in the receiver's custody: the sender may forget them.
type Custody struct {
	Frames uint64 `msgpack:"frames"`
}

// Route kinds of a RouteUpdate entry.
const (
	RouteFunction = 1 // a function name observing a tag (with a wanted target)
	RouteZipper   = 2 // a zipper (where backflow for its sources goes)
	// RouteInstance is one instance of a function, for keyed routing: its
	// Name is the function name, a 0x01 byte, and the instance's id in 16
	// hex digits. Every zipper learns every instance, so a key maps to the
	// same instance wherever its frame is written.
	RouteInstance = 3
)

// Route is one entry of a RouteUpdate: the advertiser can reach a
// destination at a cost, along a path of zippers.
type Route struct {
	Kind   uint8  `msgpack:"kind"`
	Tag    Tag    `msgpack:"tag,omitempty"`    // RouteFunction: the observed tag
	Name   string `msgpack:"name"`             // function name, or zipper name
	Target string `msgpack:"target,omitempty"` // RouteFunction: wanted target
	// Cost is the advertiser's cost to the destination, in microseconds of
	// measured link latency (0: the destination is local to it).
	Cost uint32 `msgpack:"cost"`
	// Path lists the zippers from the one where the destination is local
	// to the advertiser, inclusive.
	Path []string `msgpack:"path"`
	// Withdraw says the advertiser no longer reaches the destination.
	Withdraw bool `msgpack:"withdraw,omitempty"`
}

// RouteUpdate carries route advertisements and withdrawals between linked
// zippers, on the control stream.
type RouteUpdate struct {
	Routes []Route `msgpack:"routes"`
}

// Ping is the body of both ping and pong frames: an opaque value that the
// receiver of a ping echoes in its pong.
type Ping struct {
	Value uint64 `msgpack:"value"` // opaque; a pong echoes its ping's value
}

// typeOf returns the frame type of a control frame value.
func typeOf(v any) (Type, error) {
	if t, ok := typeOfValue[reflect.TypeOf(v)]; ok {
		return t, nil
	}
	return 0, fmt.Errorf("frame: %T is not a control frame", v)
}

// AppendControl appends a whole control frame (header and msgpack body)
// for v, one of *Handshake, *HandshakeAck, *Rejected, *GoAway, *Dropped,
// *RouteUpdate or *Ping
// (written as a ping; use AppendPing for a pong). It fails for any other
// value and for a body longer than MaxControlSize; dst is then returned
// unchanged.
func AppendControl(dst []byte, v any) ([]byte, error) {
	t, err := typeOf(v)
	if err != nil {
		return dst, err
	}
	return appendMsgpack(dst, t, v)
}

// AppendPing appends a ping (pong when pong is true) frame.
func AppendPing(dst []byte, value uint64, pong bool) []byte {
	t := TypePing
	if pong {
		t = TypePong
	}
	dst, _ = appendMsgpack(dst, t, &Ping{Value: value})
	return dst
}

func appendMsgpack(dst []byte, t Type, v any) ([]byte, error) {
	body, err := msgpack.Marshal(v)
	if err != nil {
		return dst, fmt.Errorf("frame: encode %s: %w", t, err)
	}
	if max := describe(t).maxBody; len(body) > max {
		return dst, &SizeError{Type: t, Size: len(body), Max: max}
	}
	dst = AppendHeader(dst, t, len(body))
	return append(dst, body...), nil
}

// DecodeControl decodes the body of a control frame of type t into a new
// value: *Handshake, *HandshakeAck, *Rejected, *GoAway, *Ping (for both
// ping and pong), *Dropped or *RouteUpdate. The body must be one msgpack
// map, with no trailing bytes; keys this version does not know are
// ignored; integers must be non-negative and fit their fields, nested
// ones (a route's) included. Errors: *TypeError for an unknown type,
// *SizeError for a body over MaxControlSize, errors wrapping ErrMalformed
// for an invalid body, and a plain error when t is TypeData.
func DecodeControl(t Type, body []byte) (any, error) {
	d := describe(t)
	if d == nil {
		return nil, &TypeError{Type: t}
	}
	if d.newValue == nil {
		return nil, fmt.Errorf("frame: %s is not a control frame", t)
	}
	if len(body) > d.maxBody {
		return nil, &SizeError{Type: t, Size: len(body), Max: d.maxBody}
	}
	// The body is checked with our own scanner before the library sees it:
	// the library allocates slices of the length an array declares before
	// reading its elements, so "tags" declared with 2^32-1 entries in a
	// 10-byte body would allocate 16 GiB. After the check every declared
	// length is backed by bytes of the body.
	if len(body) == 0 {
		return nil, malformed(t, "empty body")
	}
	if c := body[0]; c&0xf0 != 0x80 && c != 0xde && c != 0xdf {
		return nil, malformed(t, "body is not a map")
	}
	rest, err := skipValue(body, 0)
	if err != nil {
		return nil, malformed(t, err.Error())
	}
	if len(rest) != 0 {
		return nil, malformed(t, "trailing bytes")
	}
	// The library would silently wrap negative integers and truncate large
	// ones (a version of 2^32+1 would read as 1), so they are refused
	// first.
	if _, err := d.fields.check(body); err != nil {
		return nil, malformed(t, err.Error())
	}
	v := d.newValue()
	br := bytes.NewReader(body)
	dec := msgpack.NewDecoder(br)
	if err := dec.Decode(v); err != nil {
		return nil, malformed(t, err.Error())
	}
	if br.Len() != 0 {
		return nil, malformed(t, "trailing bytes")
	}
	return v, nil
}

// mapSchema describes the integer fields of a control frame body (or of a
// map nested in it), by key: the largest value of each, and the schema of
// nested maps. Keys absent from it are not checked here (the library
// checks their types). It is derived from the Go struct the body decodes
// into, so that the struct is the only place a field's width is written.
type mapSchema map[string]fieldSchema

// fieldSchema describes the value of one key.
type fieldSchema struct {
	max   uint64    // an integer: the largest value (0: not an integer)
	sub   mapSchema // a map (struct): its schema
	array bool      // an array whose elements are what max or sub says
}

// schemaOf derives the schema of the msgpack map that the library encodes
// a struct of type st as: every exported field, under the name of its
// msgpack tag (or its Go name), whose type is an unsigned integer, a
// struct, or a slice or pointer of those. It panics on a signed integer
// field, whose range check this package does not implement.
func schemaOf(st reflect.Type) mapSchema {
	s := make(mapSchema)
	for i := range st.NumField() {
		f := st.Field(i)
		if !f.IsExported() {
			continue
		}
		key, _, _ := strings.Cut(f.Tag.Get("msgpack"), ",")
		if key == "-" {
			continue
		}
		if key == "" {
			key = f.Name
		}
		var fs fieldSchema
		ft := f.Type
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() != reflect.Uint8 { // []byte is bin
			fs.array = true
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch ft.Kind() {
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint:
			fs.max = 1<<ft.Bits() - 1
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			panic(fmt.Sprintf("frame: signed integer field %s.%s has no range check", st.Name(), f.Name))
		case reflect.Struct:
			fs.sub = schemaOf(ft)
			if len(fs.sub) == 0 {
				continue
			}
		default:
			continue // strings, bools, lists of strings: checked by the library
		}
		s[key] = fs
	}
	return s
}

// check checks that every integer field of the map at the start of b (a
// value already checked by skipValue), nested maps included, holds a
// non-negative value that fits its Go type, and returns what follows the
// map. nil stands for zero (or an empty map) and is accepted; a value of
// another kind (a string, a float...) where an integer is due is refused.
func (s mapSchema) check(b []byte) ([]byte, error) {
	n, b, err := readMapLen(b)
	if err != nil {
		return nil, err
	}
	for range n {
		var key []byte
		if key, b, err = readStr(b); err != nil {
			return nil, errors.New("map key is not a string")
		}
		fs, ok := s[string(key)]
		if !ok || len(b) > 0 && b[0] == 0xc0 {
			if b, err = skipValue(b, 1); err != nil {
				return nil, err
			}
			continue
		}
		if !fs.array {
			if b, err = fs.checkOne(b); err != nil {
				return nil, inField(string(key), err)
			}
			continue
		}
		var elems int
		if elems, b, err = readArrayLen(b); err != nil {
			return nil, inField(string(key), err)
		}
		for j := range elems {
			if b, err = fs.checkOne(b); err != nil {
				return nil, inField(fmt.Sprintf("%s[%d]", key, j), err)
			}
		}
	}
	return b, nil
}

// checkOne checks one integer or one nested map.
func (fs fieldSchema) checkOne(b []byte) ([]byte, error) {
	if fs.sub != nil {
		return fs.sub.check(b)
	}
	v, b, err := readUint(b)
	if err != nil {
		return nil, err
	}
	if v > fs.max {
		return nil, fmt.Errorf("%d out of range", v)
	}
	return b, nil
}

// fieldError is an error in the value of a field: path names it, as in
// "routes[0].cost".
type fieldError struct {
	path string
	err  error
}

func (e *fieldError) Error() string { return e.path + ": " + e.err.Error() }

// inField says that err happened in the field named name (or in a field
// nested in it).
func inField(name string, err error) error {
	var fe *fieldError
	if errors.As(err, &fe) {
		return &fieldError{path: name + "." + fe.path, err: fe.err}
	}
	return &fieldError{path: name, err: err}
}
