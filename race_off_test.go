//go:build !race

package yomo_test

const raceEnabled = false
