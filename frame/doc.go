// Package frame defines the wire frames of the yomo protocol: how a
// client (a source, a stream function or another zipper) and a zipper
// encode what they send each other, and how the bytes are split into
// frames.
//
// Every frame is a 5-byte header, one type byte and the body length as a
// 4-byte big-endian integer, followed by a msgpack body. Control frames
// ([Handshake], [HandshakeAck], [Rejected], [GoAway], ping and pong) have
// a msgpack map as their body and are encoded with the msgpack library;
// they are rare and small. Data frames ([Data]) carry the application's
// payloads; their body is a msgpack array written and read by a small
// hand-written codec that allocates nothing. spec.md, next to this file,
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
package frame
