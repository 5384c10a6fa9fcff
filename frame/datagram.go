package frame

// A datagram (spec.md, section 8) carries one data frame outside the
// streams, in one unreliable QUIC DATAGRAM: a type byte (TypeData; the
// only type a datagram carries in this version), the sender's sequence
// number for this direction of the connection (a uvarint, from 1, one
// more for each datagram it sends), and a data body (section 5) up to the
// end of the datagram. The datagram's own length delimits the body, so
// there is no length field.

// DatagramOverhead bounds what a datagram holds besides its data body:
// the type byte and the longest sequence number. A body of at most a
// transport's datagram limit minus DatagramOverhead always fits.
const DatagramOverhead = 1 + 10

// AppendDatagram appends the datagram carrying the data body body with
// sequence number seq (at least 1) to dst.
func AppendDatagram(dst []byte, seq uint64, body []byte) []byte {
	dst = append(dst, byte(TypeData))
	dst = appendUvarint(dst, seq)
	return append(dst, body...)
}

// ParseDatagram splits a datagram into its sequence number and its data
// body, which aliases b; decode the body with Data.Decode. A type byte
// other than TypeData is an error matching ErrUnknownType; an empty
// datagram, a sequence number that is not a shortest uvarint or is 0, and
// an empty body are errors wrapping ErrMalformed.
func ParseDatagram(b []byte) (seq uint64, body []byte, err error) {
	if len(b) == 0 {
		return 0, nil, malformed(TypeData, "empty datagram")
	}
	if t := Type(b[0]); t != TypeData {
		return 0, nil, &TypeError{Type: t}
	}
	seq, body, err = readUvarint(b[1:])
	if err != nil {
		return 0, nil, malformed(TypeData, "datagram sequence: "+err.Error())
	}
	if seq == 0 {
		return 0, nil, malformed(TypeData, "datagram sequence 0")
	}
	if len(body) == 0 {
		return 0, nil, malformed(TypeData, "datagram without a data body")
	}
	return seq, body, nil
}
