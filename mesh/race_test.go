//go:build race

package mesh

// raceEnabled: the race detector slows the simulator about tenfold.
const raceEnabled = true
