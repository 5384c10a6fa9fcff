#!/usr/bin/env bash
# Short fuzzing runs, one per target: `bash .ci/fuzz.sh` from anywhere in
# the repository. Each target first replays its committed corpus
# (<package>/testdata/fuzz/<Target>/) and seeds, then fuzzes for
# FUZZTIME (default 10s). Total: about a minute plus build time.
# A failing input is written to <package>/testdata/fuzz/<Target>/; commit
# it with the fix so it is replayed by every `go test` from then on.
set -euo pipefail

cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.."

FUZZTIME="${FUZZTIME:-10s}"

# package  target
targets=(
	"./frame  FuzzReader"         # frame decoder: length-prefixed framing
	"./frame  FuzzControl"        # frame decoder: control frame bodies
	"./frame  FuzzDataRoundTrip"  # frame decoder: data frames
	".        FuzzHandshake"      # zipper handshake path (auth, ACLs, limits)
	# FuzzRouter is left out: a generated input runs for seconds (the
	# engine then reports "context deadline exceeded"); its committed corpus
	# still runs in every go test. Under investigation.
	"./mesh   FuzzMeshConverges"  # path-vector routes against Floyd-Warshall
)

start=$(date +%s)
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "==> fuzz $name in $pkg for $FUZZTIME"
	go test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$pkg"
done
echo "==> fuzzing done in $(($(date +%s) - start))s"
