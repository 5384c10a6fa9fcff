// Package yomo is an embeddable library for geo-distributed stream
// processing over QUIC.
//
// A Source writes tagged data to a Zipper. The Zipper routes every frame
// to the StreamFunctions that observe its tag: each function name gets
// each frame once, and instances sharing a name share the load. What a
// function writes while handling a frame carries that frame's origin, so
// it flows on to the functions observing its tag and back to the Source
// that started the chain when that Source observes the tag (backflow).
//
// # Lifecycle
//
// Embed a zipper in your service:
//
//	z, err := yomo.NewZipper("eu-west", yomo.WithTLSConfig(serverTLS))
//	if err != nil { ... }
//	go z.ListenAndServe(context.Background(), "0.0.0.0:9000") // Shutdown or Close ends it
//	defer z.Shutdown(context.Background())
//
// Write a handler as a Go closure:
//
//	sfn := yomo.NewStreamFunction("uppercase", "zipper.example:9000", yomo.WithTLSConfig(clientTLS))
//	sfn.SetObserveDataTags(0x10)
//	sfn.SetHandler(func(c yomo.Context) {
//		c.Write(0x11, bytes.ToUpper(c.Data()))
//	})
//	if err := sfn.Connect(ctx); err != nil { ... }
//	defer sfn.Close()
//
// And a Source:
//
//	src := yomo.NewSource("words", "zipper.example:9000", yomo.WithTLSConfig(clientTLS))
//	src.SetObserveDataTags(0x11)
//	src.SetReceiveHandler(func(tag yomo.Tag, data []byte) { fmt.Printf("%s\n", data) })
//	if err := src.Connect(ctx); err != nil { ... }
//	defer src.Close()
//	src.Write(0x10, []byte("hello"))
//
// Connect returns once the zipper accepted the client; afterwards the
// client reconnects by itself, with exponential backoff and jitter, after
// a lost connection or a zipper restart. A rejection (bad credential,
// unsupported version) is final and carries the zipper's reason as a
// *RejectedError.
//
// # Guarantees
//
// Frames from one Source with one tag reach a function instance in write
// order, and its handler is called for them one at a time in that order.
// Queues are bounded. When a function's queue at the zipper is full,
// the default policy (DropStalled) makes writers wait while the function
// keeps taking data, and drops frames for it once it has taken none for
// the stall timeout, so a stuck function delays the others by at most
// that timeout; Block never drops, DropNewest never waits. Every dropped
// frame is counted in Stats and reported to the function (*DroppedError).
// A client keeps what it writes until its zipper acknowledged it and
// sends the rest again after a reconnect; the zipper drops what it routed
// already. So a broken connection or a graceful Shutdown loses and
// duplicates nothing a client wrote; a zipper that crashes loses what it
// acknowledged and had not delivered, and what it routed but had not
// acknowledged is delivered a second time (README, "What you can rely
// on"). Frames on their way from a zipper to a function whose connection
// breaks are lost (those still queued counted as dropped).
//
// # Security
//
// TLS 1.3 with certificate verification is always on; the only way around
// verification is the explicitly named WithInsecureSkipVerify. A zipper
// given no certificate generates a self-signed one (RootCAs returns its
// pool for clients in the same process). WithAuthToken requires a token
// credential, compared in constant time and never logged or echoed.
//
// # Concurrency and buffers
//
// All exported methods are safe for concurrent use. A Handler's Context
// and the data it returns are valid only until the handler returns; Write
// copies its argument before returning. Handlers and error handlers run on
// the client's own goroutines; Close waits for them.
package yomo
