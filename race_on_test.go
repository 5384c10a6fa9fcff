//go:build race

package yomo_test

// raceEnabled: the race detector makes a QUIC handshake several times
// slower, so tests that make many connections make fewer.
const raceEnabled = true
