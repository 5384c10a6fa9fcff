package frame

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// specTable returns the rows (cells without backquotes; header and
// separator left out) of the one table of spec.md whose header is header.
func specTable(t *testing.T, spec, header string) [][]string {
	t.Helper()
	if n := strings.Count(spec, "\n"+header+"\n"); n != 1 {
		t.Fatalf("spec.md has %d tables with the header %q, want 1", n, header)
	}
	_, after, _ := strings.Cut(spec, "\n"+header+"\n")
	var rows [][]string
	for _, line := range strings.Split(after, "\n")[1:] { // after the separator
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i, c := range cells {
			cells[i] = strings.ReplaceAll(strings.TrimSpace(c), "`", "")
		}
		rows = append(rows, cells)
	}
	if len(rows) == 0 {
		t.Fatalf("spec.md: the table %q is empty", header)
	}
	return rows
}

func readSpec(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("spec.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSpecFrameTypes checks spec.md's table of frame types, and the
// sentence on the values that are not frame types, against the
// descriptors.
func TestSpecFrameTypes(t *testing.T) {
	spec := readSpec(t)
	seen := make(map[Type]bool)
	for _, row := range specTable(t, spec, "| type | value | stream | body |") {
		if len(row) != 4 {
			t.Fatalf("frame types: row %q has %d cells, want 4", row, len(row))
		}
		v, err := strconv.ParseUint(strings.TrimPrefix(row[1], "0x"), 16, 8)
		d := describe(Type(v))
		if err != nil || d == nil || row[1] != fmt.Sprintf("0x%02x", v) {
			t.Errorf("frame types: %s %s is not a frame type of the package", row[0], row[1])
			continue
		}
		seen[Type(v)] = true
		if !strings.EqualFold(row[0], strings.ReplaceAll(d.name, "-", "")) {
			t.Errorf("frame types: %s is %s in the spec, %s in the package", row[1], row[0], d.name)
		}
		stream, body := "control, ", "map, §6."
		switch d.stream {
		case dataStream:
			stream, body = "data, ", "compact, §5"
		case bodyStream:
			stream, body = "body, ", "compact, §5"
		}
		if want := stream + d.from; row[2] != want {
			t.Errorf("frame types: %s travels on %q in the spec, %q in the package", row[0], row[2], want)
		}
		if !strings.HasPrefix(row[3], body) {
			t.Errorf("frame types: %s has body %q in the spec, want %q…", row[0], row[3], body)
		}
	}
	// Every descriptor is in the table; the others are reserved.
	var reserved []string
	for v := 0; v < 256; v++ {
		if describe(Type(v)) != nil {
			if !seen[Type(v)] {
				t.Errorf("frame types: %v (0x%02x) is missing from spec.md", Type(v), v)
			}
			continue
		}
		end := v
		for end < 255 && describe(Type(end+1)) == nil {
			end++
		}
		if end == v {
			reserved = append(reserved, fmt.Sprintf("`0x%02x`", v))
		} else {
			reserved = append(reserved, fmt.Sprintf("`0x%02x`–`0x%02x`", v, end))
		}
		v = end
	}
	sentence := strings.Join(reserved, " and ") + " are not frame types in this version"
	if !strings.Contains(strings.Join(strings.Fields(spec), " "), sentence) {
		t.Errorf("spec.md does not say %q", sentence)
	}
}

// TestSpecCodes checks spec.md's tables of close codes and rejection codes
// against the package's.
func TestSpecCodes(t *testing.T) {
	spec := readSpec(t)
	rows := specTable(t, spec, "| code | name | meaning | what a client does |")
	named := 0
	for _, row := range rows {
		if len(row) != 4 {
			t.Fatalf("close codes: row %q has %d cells, want 4", row, len(row))
		}
		if row[0] == fmt.Sprintf("%#x + n", uint64(CloseRejectBase)) {
			if row[1] != "rejected(n)" {
				t.Errorf("close codes: %s is named %q, want rejected(n)", row[0], row[1])
			}
			continue
		}
		v, err := strconv.ParseUint(row[0], 0, 64)
		if err != nil || CloseCode(v).String() != row[1] {
			t.Errorf("close codes: %s %s in the spec, %v in the package", row[0], row[1], CloseCode(v))
		}
		named++
	}
	if want := len(closeNames); named != want {
		t.Errorf("close codes: %d named codes in spec.md, %d in the package", named, want)
	}

	rows = specTable(t, spec, "| code | name | meaning |")
	known := 0
	for _, row := range rows {
		v, err := strconv.ParseUint(row[0], 10, 16)
		if err != nil || len(row) != 3 || !RejectCode(v).Known() || RejectCode(v).String() != row[1] {
			t.Errorf("rejection codes: %q, package: %v", row, RejectCode(v))
			continue
		}
		known++
	}
	for r := range RejectCode(len(rejectNames)) {
		if r.Known() {
			known--
		}
	}
	if known != 0 {
		t.Errorf("rejection codes: spec.md and the package do not list the same number")
	}
}

// TestSpecStreamCodes checks spec.md's table of stream codes against the
// package's.
func TestSpecStreamCodes(t *testing.T) {
	rows := specTable(t, readSpec(t), "| code | name | sent when |")
	for _, row := range rows {
		v, err := strconv.ParseUint(row[0], 0, 64)
		if err != nil || len(row) != 3 || !StreamCode(v).Known() || StreamCode(v).String() != row[1] {
			t.Errorf("stream codes: %q, package: %v", row, StreamCode(v))
		}
	}
	if want := len(streamNames) - 1; len(rows) != want {
		t.Errorf("stream codes: %d in spec.md, %d in the package", len(rows), want)
	}
}
