// Package knobs holds switches that benchmarks inside this module flip to
// measure what a mechanism costs. Nothing outside the module can reach
// them, and nothing in the library sets them.
package knobs

import "sync/atomic"

// NoMeshCustody turns off, when set before zippers link, hop-by-hop
// custody and mesh sequencing for links made from then on: frames a link
// held when it fails are dropped and counted, as before custody, and no
// frame is numbered. BenchmarkCascade compares the two in one run.
var NoMeshCustody atomic.Bool
