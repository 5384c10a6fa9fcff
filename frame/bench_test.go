package frame

import (
	"fmt"
	"testing"
)

var benchSizes = []int{16, 1 << 10, 64 << 10}

func benchData(size int) *Data {
	return &Data{
		Tag:      33,
		Target:   []byte("sfn-1"),
		Origin:   7,
		TID:      42,
		Metadata: MetadataOf("trace", "0af7651916cd43dd8448eb211c80319c"),
		Payload:  pattern(size),
	}
}

func BenchmarkAppendData(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			d := benchData(size)
			buf := make([]byte, 0, HeaderSize+DataSize(d))
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendData(buf[:0], d)
			}
		})
	}
}

func BenchmarkDecodeData(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			body := AppendData(nil, benchData(size))[HeaderSize:]
			var d Data
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if err := d.Decode(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadData measures Reader.Next and Data.Decode together, from
// an in-memory stream.
func BenchmarkReadData(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			r := NewReader(&cycleReader{b: AppendData(nil, benchData(size))}, 0)
			var d Data
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				_, body, err := r.Next()
				if err != nil {
					b.Fatal(err)
				}
				if err := d.Decode(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
