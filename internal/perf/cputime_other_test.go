//go:build !unix

package perf

import "time"

// cpuTime is not measured on this platform: the cpu-s/GiB metric is 0.
func cpuTime() time.Duration { return 0 }
