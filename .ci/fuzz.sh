#!/usr/bin/env bash
# Short fuzzing runs, one per target: `bash .ci/fuzz.sh` from anywhere in
# the repository. Each target first replays its committed corpus
# (<package>/testdata/fuzz/<Target>/) and seeds, then fuzzes for a fixed
# number of executions, sized to about 10 s each on the 2-core CI machine
# (FUZZSCALE multiplies them; default 1). Total: about a minute plus build
# time.
#
# Budgets are execution counts ("-fuzztime Nx"), not durations: with a
# duration, Go 1.26's fuzz coordinator can report "context deadline
# exceeded" as a failure when the time runs out while a worker is busy
# (golang/go#75804, fixed in Go 1.27), without any failing input. A count
# has no deadline to race.
# A failing input is written to <package>/testdata/fuzz/<Target>/; commit
# it with the fix so it is replayed by every `go test` from then on.
set -euo pipefail

cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.."

FUZZSCALE="${FUZZSCALE:-1}"

# package  target  executions (at FUZZSCALE 1)
targets=(
	"./frame   FuzzReader         150000" # frame decoder: length-prefixed framing
	"./frame   FuzzControl        100000" # frame decoder: control frame bodies
	"./frame   FuzzDataRoundTrip   80000" # frame decoder: data frames
	"./frame   FuzzDatagram        40000" # frame decoder: datagrams
	"./frame   FuzzReadBody        40000" # frame decoder: body stream headers
	".         FuzzHandshake       50000" # zipper handshake path (auth, ACLs, limits)
	"./router  FuzzRouter          40000" # routing table against a model
	"./mesh    FuzzMeshConverges   25000" # path-vector routes against Floyd-Warshall
)

start=$(date +%s)
for t in "${targets[@]}"; do
	read -r pkg name execs <<<"$t"
	n=$((execs * FUZZSCALE))
	echo "==> fuzz $name in $pkg for $n executions"
	go test -run='^$' -fuzz="^${name}\$" -fuzztime="${n}x" "$pkg"
done
echo "==> fuzzing done in $(($(date +%s) - start))s"
