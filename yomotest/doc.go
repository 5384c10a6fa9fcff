// Package yomotest provides what unit tests of yomo handlers need, in the
// spirit of net/http/httptest: a ready yomo.Context that serves one frame
// and records what the handler writes.
//
// Test a handler without a zipper:
//
//	func TestUpper(t *testing.T) {
//		c := yomotest.NewContext(yomo.Message{Tag: 0x10, Data: []byte("hi")})
//		upper(c) // a yomo.Handler
//		got := c.Written()
//		if len(got) != 1 || got[0].Tag != 0x11 || string(got[0].Data) != "HI" {
//			t.Fatalf("wrote %+v", got)
//		}
//	}
//
// Use it rather than implementing yomo.Context yourself: the library may
// give the Context of a handler more methods (it already does through
// yomo.MessageContext), and this package follows them, so tests written
// against it keep compiling.
package yomotest
