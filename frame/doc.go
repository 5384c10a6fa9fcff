// Package frame defines the wire frames of the yomo protocol: how a
// client (a source, a stream function or another zipper) and a zipper
// encode what they send each other, and how the bytes are split into
// frames.
//
// Every frame is a 5-byte header, one type byte and the body length as a
// 4-byte big-endian integer, followed by the body. Control frames
// ([Handshake], [HandshakeAck], [Rejected], [GoAway], ping and pong,
// [Dropped], [RouteUpdate]) have a msgpack map as their body and are encoded with the msgpack library;
// they are rare and small. Data frames ([Data]) carry the application's
// payloads; their body is a compact encoding (a flags byte, varints,
// length-prefixed fields, then the payload up to the end of the body)
// written and read by a small hand-written codec that allocates nothing. spec.md, next to this file,
// describes the format completely, for other implementations.
//
// [Reader] splits a stream into frames, refusing unknown types and
// oversized lengths before it allocates anything for the body.
//
// The package is a leaf: it knows nothing of connections, streams or
// routing, and it does no I/O besides reading from the io.Reader it is
// given.
//
// Writing and reading a data frame:
//
//	buf = frame.AppendData(buf[:0], &frame.Data{
//		Tag:      33,
//		Target:   []byte("sfn-1"),
//		Metadata: frame.MetadataOf("trace", "ab12"),
//		Payload:  payload,
//	})
//	if _, err := stream.Write(buf); err != nil {
//		return err
//	}
//
//	r := frame.NewReader(stream, frame.DefaultMaxSize)
//	for {
//		t, body, err := r.Next()
//		if err != nil {
//			return err // io.EOF at a clean end; otherwise close the connection
//		}
//		if t != frame.TypeData {
//			return fmt.Errorf("unexpected %s frame on a data stream", t)
//		}
//		var d frame.Data
//		if err := d.Decode(body); err != nil {
//			return err
//		}
//		handle(d.Tag, d.Payload) // d aliases body: valid until the next r.Next
//	}
//
// # Adding a frame type
//
// Everything the package knows about a frame type is its entry in the
// table of descriptors (types.go): its name ([Type.String]), the stream it
// travels on, the limit on its body ([ParseHeader]), and the struct its
// body decodes into ([DecodeControl], [AppendControl]), whose msgpack tags
// name the keys and whose unsigned integer types give the range of every
// integer field, nested structs included. A new control frame type is:
//
//  1. a Type constant, the next free value, and its descriptor entry,
//     with a struct for its body (unsigned integer fields only);
//  2. in spec.md, a row of the table of section 3, the range of values
//     that are not frame types there, and a subsection of section 6 with
//     its keys (TestSpecFrameTypes fails until the table and the range
//     agree with the descriptors);
//  3. a golden case in controlCases (golden_test.go), whose file
//     testdata/<name>.golden is written by go test ./frame -update once
//     and also seeds FuzzControl;
//  4. in the connection code of package yomo, the handler: a case in the
//     readControl switch of the side that receives it (zconn in zipper.go
//     for client → zipper, client in client.go for zipper → client, link in
//     link.go between zippers). Until then the receiver treats it as an
//     unexpected frame and closes the connection.
//
// A peer of an older version does not know the new type and closes the
// connection when it receives one (spec.md, section 4): send it only to
// peers known to understand it.
package frame
