package sidebyside

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Machine describes where the run happens: OS, CPUs, Go, the versions of
// the compared software.
func Machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	quicVersion := "?"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/quic-go/quic-go" {
				quicVersion = d.Version
			}
		}
	}
	return fmt.Sprintf("%s/%s, %d CPUs (%s), %s; nats-server %s, nats.go %s, quic-go %s",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), model, runtime.Version(),
		server.VERSION, nats.Version, quicVersion)
}

// LoadAverage returns /proc/loadavg's 1, 5 and 15 minute load averages
// ("?" where it does not exist).
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
