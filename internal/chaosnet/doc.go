// Package chaosnet is a UDP proxy with faults that can be changed while it
// runs: loss, delay with jitter (and so reordering), duplication, and a
// cut that drops everything both ways. Tests put one in front of a zipper
// to give a mesh link a bad network on loopback.
//
// A Proxy listens on 127.0.0.1 and forwards every datagram it receives to
// its target; each client address gets its own socket towards the target,
// and what the target answers on that socket goes back to that client. A
// QUIC connection through the proxy therefore works like one over a real
// path, and every fault applies to both directions.
//
//	p, err := chaosnet.Listen("127.0.0.1:4242", chaosnet.Config{Seed: 1})
//	if err != nil { ... }
//	defer p.Close()                  // stops its goroutines and waits for them
//	dial(p.Addr())                   // instead of the target's address
//	p.SetFaults(chaosnet.Faults{Loss: 0.03, Jitter: 4 * time.Millisecond})
//	p.Cut()                          // the path is gone, both ways
//	p.Restore()                      // and back
//	st := p.Stats()                  // datagrams forwarded and dropped, each way
//
// Delays are kept in one queue per direction, a heap ordered by release
// time served by one goroutine and a timer, so a proxy runs three
// goroutines (a reader, two schedulers) plus one reader per client however
// many datagrams are in flight. The queues are bounded (Config.QueueLimit);
// a datagram that does not fit is dropped and counted, like one a router
// drops.
//
// Every random decision (loss, jitter, duplication) comes from one
// generator seeded by Config.Seed: the same seed gives the same sequence
// of decisions. Which datagram each decision meets depends on the order in
// which datagrams arrive, which the proxy does not control.
package chaosnet
