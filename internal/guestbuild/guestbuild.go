// Package guestbuild builds the example WebAssembly guests
// (examples/wasm-LANG/guest) from source with examples/wasm-guests.sh, for
// the examples' tests and the wasm package's benchmarks. Builds are kept
// in the user's cache directory, keyed by a hash of their sources, so the
// tests of several packages build each guest once.
package guestbuild

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
)

// Langs are the guests' languages, as wasm-guests.sh names them.
var Langs = []string{"c", "command", "rust", "zig", "go"}

// ErrNoToolchain is wrapped by Build's error when the language's
// toolchain is missing; the message says what to install.
var ErrNoToolchain = errors.New("toolchain missing")

// root is the module's root directory, from this file's.
func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Build builds the guest of lang, unless a build of the same sources is
// in the cache, and returns its path.
func Build(lang string) (string, error) {
	if !slices.Contains(Langs, lang) {
		return "", fmt.Errorf("guestbuild: unknown language %q", lang)
	}
	dir := root()
	script := filepath.Join(dir, "examples", "wasm-guests.sh")
	src := filepath.Join(dir, "examples", "wasm-"+lang, "guest")
	inputs := []string{script, src}
	if lang == "go" {
		inputs = append(inputs, filepath.Join(dir, "wasm", "guest"), filepath.Join(dir, "go.mod"))
	}
	sum, err := hashFiles(inputs...)
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	cache = filepath.Join(cache, "yomo-wasm-guests")
	out := filepath.Join(cache, lang+"-"+sum[:16]+".wasm")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	// Build to a file of our own and rename it into place, so that
	// concurrent builds of one guest do not see each other's halves.
	tmp, err := os.CreateTemp(cache, lang+"-*.tmp")
	if err != nil {
		return "", err
	}
	_ = tmp.Close()
	defer func() { _ = os.Remove(tmp.Name()) }()
	cmd := exec.Command("sh", script, lang, tmp.Name())
	b, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit) && exit.ExitCode() == 3:
		return "", fmt.Errorf("guestbuild: %w: %s", ErrNoToolchain, b)
	case err != nil:
		return "", fmt.Errorf("guestbuild: building the %s guest: %w\n%s", lang, err, b)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", err
	}
	return out, nil
}

// ForTest returns the guest of lang, built. A missing toolchain skips
// the test, except in CI (CI=true), where it fails it: CI installs every
// toolchain, so a missing one is a broken CI.
func ForTest(t testing.TB, lang string) []byte {
	t.Helper()
	path, err := Build(lang)
	if errors.Is(err, ErrNoToolchain) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI must install every guest toolchain: see .ci/run)", err)
		}
		t.Skipf("skipping the %s guest: %v", lang, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hashFiles hashes the names and contents of the files under paths.
func hashFiles(paths ...string) (string, error) {
	h := sha256.New()
	for _, p := range paths {
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if n := d.Name(); n == "target" || n == "zig-cache" || n == "zig-out" {
					return filepath.SkipDir
				}
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(p, path)
			fmt.Fprintf(h, "%s %d\n", rel, len(b))
			h.Write(b)
			return nil
		})
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
