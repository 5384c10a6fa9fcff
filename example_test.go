package yomo_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/mesh"
)

// A zipper that requires a token: a client presenting it is accepted, and
// a client presenting anything else is refused for good with a
// *RejectedError carrying the zipper's reason (never the token).
func ExampleNewZipper() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))

	z, err := yomo.NewZipper("edge", yomo.WithAuthToken("s3cret"), quiet)
	if err != nil {
		log.Fatal(err)
	}
	defer z.Close()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go z.Serve(ctx, pc) // returns when the zipper is closed
	addr := pc.LocalAddr().String()

	// The zipper made itself a certificate; clients in this process trust
	// it through RootCAs. Verification is never off by default.
	trust := yomo.WithTLSConfig(&tls.Config{RootCAs: z.RootCAs()})

	good := yomo.NewSource("sensor", addr, trust, quiet, yomo.WithCredential("token:s3cret"))
	if err := good.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer good.Close()

	bad := yomo.NewSource("intruder", addr, trust, quiet, yomo.WithCredential("token:guess"))
	defer bad.Close()
	var rej *yomo.RejectedError
	if err := bad.Connect(ctx); errors.As(err, &rej) {
		fmt.Println("intruder rejected:", rej.Reason)
	}

	st := z.Stats()
	fmt.Printf("%s: %d accepted, %d rejected\n", st.Name, st.Connections.Accepted, st.Connections.Rejected)
	// Output:
	// intruder rejected: authentication failed
	// edge: 1 accepted, 1 rejected
}

// A Source writes tagged data; the zipper delivers it to the functions
// observing the tag. Frames from one Source with one tag are handled in
// the order they were written.
func ExampleNewSource() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))

	z, err := yomo.NewZipper("edge", quiet)
	if err != nil {
		log.Fatal(err)
	}
	defer z.Close()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go z.Serve(ctx, pc) // returns when the zipper is closed
	addr := pc.LocalAddr().String()
	trust := yomo.WithTLSConfig(&tls.Config{RootCAs: z.RootCAs()})

	const tagReading yomo.Tag = 0x10
	handled := make(chan struct{})
	printer := yomo.NewStreamFunction("printer", addr, trust, quiet)
	printer.SetObserveDataTags(tagReading)
	printer.SetHandler(func(c yomo.Context) {
		fmt.Printf("printer got tag %#x: %s\n", c.Tag(), c.Data())
		handled <- struct{}{}
	})
	if err := printer.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer printer.Close()

	src := yomo.NewSource("thermometer", addr, trust, quiet)
	if err := src.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	readings := []string{"21.5", "21.7", "22.0"}
	for _, r := range readings {
		if err := src.Write(tagReading, []byte(r)); err != nil {
			log.Fatal(err)
		}
	}
	for range readings {
		<-handled
	}
	// Output:
	// printer got tag 0x10: 21.5
	// printer got tag 0x10: 21.7
	// printer got tag 0x10: 22.0
}

// Functions chain by tags: what a handler writes goes to the functions
// observing the tag it writes, here from "double" to "print". Metadata
// written by the Source (a trace id, say) travels along the whole chain.
func ExampleNewStreamFunction() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))

	z, err := yomo.NewZipper("edge", quiet)
	if err != nil {
		log.Fatal(err)
	}
	defer z.Close()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go z.Serve(ctx, pc) // returns when the zipper is closed
	addr := pc.LocalAddr().String()
	trust := yomo.WithTLSConfig(&tls.Config{RootCAs: z.RootCAs()})

	const (
		tagIn      yomo.Tag = 0x10
		tagDoubled yomo.Tag = 0x11
	)

	// "double" observes tagIn and writes tagDoubled. Data is only valid
	// during the call; Write copies it.
	double := yomo.NewStreamFunction("double", addr, trust, quiet)
	double.SetObserveDataTags(tagIn)
	double.SetHandler(func(c yomo.Context) {
		c.Write(tagDoubled, bytes.Repeat(c.Data(), 2))
	})
	if err := double.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer double.Close()

	// "print" observes what "double" writes.
	done := make(chan struct{})
	printFn := yomo.NewStreamFunction("print", addr, trust, quiet)
	printFn.SetObserveDataTags(tagDoubled)
	printFn.SetHandler(func(c yomo.Context) {
		trace, _ := c.Metadata("traceparent")
		fmt.Printf("%s (trace %s)\n", c.Data(), trace)
		close(done)
	})
	if err := printFn.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer printFn.Close()

	src := yomo.NewSource("words", addr, trust, quiet)
	if err := src.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	md := map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	if err := src.WriteWithMetadata(tagIn, []byte("yo"), md); err != nil {
		log.Fatal(err)
	}
	<-done
	// Output:
	// yoyo (trace 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01)
}

// Backflow: what a function writes while handling a Source's frame goes
// back to that Source when it observes the tag written. Here a function
// answers each word with its upper-case form.
func ExampleSource_SetReceiveHandler() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))

	z, err := yomo.NewZipper("edge", quiet)
	if err != nil {
		log.Fatal(err)
	}
	defer z.Close()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go z.Serve(ctx, pc) // returns when the zipper is closed
	addr := pc.LocalAddr().String()
	trust := yomo.WithTLSConfig(&tls.Config{RootCAs: z.RootCAs()})

	const (
		tagWord  yomo.Tag = 0x10
		tagUpper yomo.Tag = 0x11
	)
	upper := yomo.NewStreamFunction("uppercase", addr, trust, quiet)
	upper.SetObserveDataTags(tagWord)
	upper.SetHandler(func(c yomo.Context) {
		c.Write(tagUpper, bytes.ToUpper(c.Data()))
	})
	if err := upper.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer upper.Close()

	results := make(chan string)
	src := yomo.NewSource("words", addr, trust, quiet)
	src.SetObserveDataTags(tagUpper) // before Connect
	src.SetReceiveHandler(func(tag yomo.Tag, data []byte) {
		results <- string(data) // data is valid only during the call: copy it
	})
	if err := src.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer src.Close()

	words := []string{"hello", "backflow"}
	for _, w := range words {
		if err := src.Write(tagWord, []byte(w)); err != nil {
			log.Fatal(err)
		}
	}
	for _, w := range words {
		fmt.Printf("%s -> %s\n", w, <-results)
	}
	// Output:
	// hello -> HELLO
	// backflow -> BACKFLOW
}

// A function in the zipper's own process connects in memory: no socket,
// no TLS, same semantics. Here the zipper does not even listen.
func ExampleWithInMemory() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))

	z, err := yomo.NewZipper("embedded", quiet)
	if err != nil {
		log.Fatal(err)
	}
	defer z.Close()
	local := yomo.WithInMemory(z) // the address below is only a label

	sum := yomo.NewStreamFunction("length", "in-memory", local, quiet)
	sum.SetObserveDataTags(0x10)
	sum.SetHandler(func(c yomo.Context) {
		c.Write(0x11, fmt.Appendf(nil, "%q has %d bytes", c.Data(), len(c.Data())))
	})
	if err := sum.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer sum.Close()

	done := make(chan struct{})
	src := yomo.NewSource("client", "in-memory", local, quiet)
	src.SetObserveDataTags(0x11)
	src.SetReceiveHandler(func(_ yomo.Tag, data []byte) {
		fmt.Println(string(data))
		close(done)
	})
	if err := src.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	if err := src.Write(0x10, []byte("zipper")); err != nil {
		log.Fatal(err)
	}
	<-done
	// Output:
	// "zipper" has 6 bytes
}

// A frame written with a target goes only to the instances whose wanted
// target matches; here one instance per user, so a message reaches one
// user's session only.
func ExampleStreamFunction_SetWantedTarget() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))

	z, err := yomo.NewZipper("chat", quiet)
	if err != nil {
		log.Fatal(err)
	}
	defer z.Close()
	local := yomo.WithInMemory(z)

	const tagMessage yomo.Tag = 0x30
	got := make(chan string)
	for _, user := range []string{"alice", "bob"} {
		session := yomo.NewStreamFunction("session", "in-memory", local, quiet)
		session.SetObserveDataTags(tagMessage)
		session.SetWantedTarget(user)
		session.SetHandler(func(c yomo.Context) {
			got <- fmt.Sprintf("%s's session got %q", user, c.Data())
		})
		if err := session.Connect(ctx); err != nil {
			log.Fatal(err)
		}
		defer session.Close()
	}

	src := yomo.NewSource("server", "in-memory", local, quiet)
	if err := src.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	src.WriteWithTarget(tagMessage, []byte("hi bob"), "bob")
	fmt.Println(<-got)
	src.WriteWithTarget(tagMessage, []byte("hi alice"), "alice")
	fmt.Println(<-got)
	// Output:
	// bob's session got "hi bob"
	// alice's session got "hi alice"
}

// Two zippers in a mesh: "eu-west" links to "us-east". A function runs in
// us-east, a Source writes in eu-west; the frame crosses the link to the
// function and the answer comes back to the Source.
//
// Here eu-west trusts us-east's self-signed certificate through the
// RootCAs of its TLS configuration; in production every zipper presents
// a certificate from a common CA and trusts that CA.
func ExampleWithMesh() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))

	usEast, err := yomo.NewZipper("us-east", quiet)
	if err != nil {
		log.Fatal(err)
	}
	defer usEast.Close()
	usConn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go usEast.Serve(ctx, usConn) // returns when the zipper is closed
	usAddr := usConn.LocalAddr().String()

	euWest, err := yomo.NewZipper("eu-west", quiet,
		yomo.WithTLSConfig(&tls.Config{RootCAs: usEast.RootCAs()}), // verifies us-east
		yomo.WithMesh(mesh.Peer{Name: "us-east", Addr: usAddr}))
	if err != nil {
		log.Fatal(err)
	}
	defer euWest.Close()
	euConn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go euWest.Serve(ctx, euConn) // dials its peers; returns when closed
	euAddr := euConn.LocalAddr().String()

	const (
		tagOrder   yomo.Tag = 0x20
		tagInvoice yomo.Tag = 0x21
	)
	billing := yomo.NewStreamFunction("billing", usAddr, quiet,
		yomo.WithTLSConfig(&tls.Config{RootCAs: usEast.RootCAs()}))
	billing.SetObserveDataTags(tagOrder)
	billing.SetHandler(func(c yomo.Context) {
		c.Write(tagInvoice, fmt.Appendf(nil, "invoice for %s, billed in us-east", c.Data()))
	})
	if err := billing.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer billing.Close()

	// Frames no function can be reached for are dropped (and counted), so
	// wait until eu-west has learned the route to "billing".
	for len(euWest.Stats().Routes) == 0 {
		if ctx.Err() != nil {
			log.Fatal("eu-west learned no route")
		}
		time.Sleep(5 * time.Millisecond)
	}
	r := euWest.Stats().Routes[0]
	fmt.Printf("eu-west reaches %q via %s\n", r.Function, r.Via)

	invoices := make(chan string)
	shop := yomo.NewSource("shop", euAddr, quiet,
		yomo.WithTLSConfig(&tls.Config{RootCAs: euWest.RootCAs()}))
	shop.SetObserveDataTags(tagInvoice)
	shop.SetReceiveHandler(func(_ yomo.Tag, data []byte) { invoices <- string(data) })
	if err := shop.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer shop.Close()
	if err := shop.Write(tagOrder, []byte("order #42")); err != nil {
		log.Fatal(err)
	}
	fmt.Println("shop in eu-west got:", <-invoices)
	// Output:
	// eu-west reaches "billing" via us-east
	// shop in eu-west got: invoice for order #42, billed in us-east
}

// Request/reply: the reply is the first result a function writes while
// handling the request, whatever its tag; ErrNoResponders comes at once
// when nothing observes the tag.
func ExampleSource_Request() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))
	z, err := yomo.NewZipper("edge", quiet)
	if err != nil {
		log.Fatal(err)
	}
	defer z.Close()

	upper := yomo.NewStreamFunction("upper", "", yomo.WithInMemory(z), quiet)
	upper.SetObserveDataTags(0x10)
	_ = upper.SetHandler(func(c yomo.Context) { _ = c.Write(0x11, bytes.ToUpper(c.Data())) })
	if err := upper.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer upper.Close()

	src := yomo.NewSource("api", "", yomo.WithInMemory(z), quiet)
	if err := src.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	reply, err := src.Request(ctx, 0x10, []byte("hello"))
	fmt.Printf("%s %v\n", reply, err)
	_, err = src.Request(ctx, 0x99, []byte("anyone?"))
	fmt.Println(errors.Is(err, yomo.ErrNoResponders))
	// Output:
	// HELLO <nil>
	// true
}

// A connected function adds a tag without reconnecting: once
// SetObserveDataTags returns, the zipper routes the new tag to it.
func ExampleStreamFunction_SetObserveDataTags() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))
	z, err := yomo.NewZipper("edge", quiet)
	if err != nil {
		log.Fatal(err)
	}
	defer z.Close()

	fn := yomo.NewStreamFunction("echo", "", yomo.WithInMemory(z), quiet)
	fn.SetObserveDataTags(0x10)
	_ = fn.SetHandler(func(c yomo.Context) { _ = c.Write(0x20, c.Data()) })
	if err := fn.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer fn.Close()
	src := yomo.NewSource("api", "", yomo.WithInMemory(z), quiet)
	if err := src.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer src.Close()

	_, err = src.Request(ctx, 0x12, []byte("a"))
	fmt.Println("before:", err)
	fn.SetObserveDataTags(0x10, 0x12)
	reply, err := src.Request(ctx, 0x12, []byte("a"))
	fmt.Printf("after: %s %v\n", reply, err)
	// Output:
	// before: yomo: no responders: nothing observes the request's tag
	// after: a <nil>
}

// The connection's state, and every change with its reason.
func ExampleSource_SetStateHandler() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))
	z, err := yomo.NewZipper("edge", quiet)
	if err != nil {
		log.Fatal(err)
	}
	defer z.Close()

	src := yomo.NewSource("api", "", yomo.WithInMemory(z), quiet)
	src.SetStateHandler(func(c yomo.StateChange) { fmt.Println(c.From, "->", c.To) })
	if err := src.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("state:", src.State())
	_ = src.Close()
	// Output:
	// idle -> connecting
	// connecting -> connected
	// state: connected
	// connected -> closed
}

// Readings that are worth less late than lost go as datagrams: each is
// sent once and never waits behind a lost packet. Too large a frame is
// refused at Write. (In memory nothing is lost; over QUIC, losses show
// in DatagramStats and the zipper's Stats().Datagrams.)
func ExampleWithDatagramTags() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))
	z, err := yomo.NewZipper("edge", quiet)
	if err != nil {
		log.Fatal(err)
	}
	defer z.Close()
	local := yomo.WithInMemory(z)

	got := make(chan string, 1)
	fn := yomo.NewStreamFunction("track", "in-memory", local, quiet)
	fn.SetObserveDataTags(0x20)
	fn.SetHandler(func(c yomo.Context) { got <- string(c.Data()) })
	if err := fn.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer fn.Close()

	src := yomo.NewSource("gps", "in-memory", local, quiet, yomo.WithDatagramTags(0x20))
	if err := src.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	src.Write(0x20, []byte("52.52,13.40"))
	fmt.Println(<-got)
	err = src.Write(0x20, make([]byte, 2000))
	fmt.Println(errors.Is(err, yomo.ErrFrameTooLarge))
	fmt.Printf("%+v\n", z.Stats().Datagrams)
	// Output:
	// 52.52,13.40
	// true
	// {In:1 Out:1 Lost:0 Late:0 TooLarge:0 QueueFull:0 NoConnection:0}
}

// A body of any size as a stream: the source writes it, the function
// reads it as it arrives, and Close says whether every reader took it.
func ExampleSource_OpenStream() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))

	z, err := yomo.NewZipper("embedded", quiet)
	if err != nil {
		log.Fatal(err)
	}
	defer z.Close()
	local := yomo.WithInMemory(z)

	store := yomo.NewStreamFunction("store", "in-memory", local, quiet)
	store.SetObserveDataTags(0x20)
	store.SetStreamHandler(func(r *yomo.StreamReader) error {
		h := sha256.New()
		n, err := io.Copy(h, r)
		name, _ := r.Metadata("name")
		fmt.Printf("stored %s: %d bytes, sha256 %x…\n", name, n, h.Sum(nil)[:4])
		return err
	})
	if err := store.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	src := yomo.NewSource("uploader", "in-memory", local, quiet)
	if err := src.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	if _, err := src.OpenStream(ctx, 0x30); errors.Is(err, yomo.ErrNoResponders) {
		fmt.Println("nothing observes 0x30")
	}
	w, err := src.OpenStreamMessage(ctx, yomo.Message{Tag: 0x20, Metadata: map[string]string{"name": "zeros.bin"}})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := io.CopyN(w, zeros{}, 10<<20); err != nil { // 10 MiB, never all in memory
		log.Fatal(err)
	}
	fmt.Println("close:", w.Close())
	// Output:
	// nothing observes 0x30
	// stored zeros.bin: 10485760 bytes, sha256 e5b844cc…
	// close: <nil>
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// A Source whose address changes (a phone moving from Wi-Fi to cellular,
// here a new local socket) keeps its connection: QUIC migrates it, the
// zipper sees no reconnect, and nothing in flight is lost.
func ExampleSource_Migrate() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))

	z, err := yomo.NewZipper("edge", quiet)
	if err != nil {
		log.Fatal(err)
	}
	defer z.Close()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go z.Serve(ctx, pc) // returns when the zipper is closed

	got := make(chan string, 2)
	fn := yomo.NewStreamFunction("track", "in-memory", yomo.WithInMemory(z), quiet)
	fn.SetObserveDataTags(0x20)
	fn.SetHandler(func(c yomo.Context) { got <- string(c.Data()) })
	if err := fn.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer fn.Close()

	phone := yomo.NewSource("phone", pc.LocalAddr().String(), quiet, yomo.WithRootCAPEM(z.RootCAPEM()))
	if err := phone.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer phone.Close()
	if err := phone.Write(0x20, []byte("on wi-fi")); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-got)

	cellular, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	if err := phone.Migrate(ctx, cellular); err != nil { // phone owns cellular from now on
		log.Fatal(err)
	}
	if err := phone.Write(0x20, []byte("on cellular")); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-got)
	fmt.Println("sources connected:", z.Stats().Connections.Sources)
	// Output:
	// on wi-fi
	// on cellular
	// sources connected: 1
}
