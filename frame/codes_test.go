package frame

import "testing"

func TestCloseCodes(t *testing.T) {
	names := map[CloseCode]string{
		CloseNormal: "normal", CloseGoAway: "goaway", CloseProtocol: "protocol", CloseLimit: "limit",
		CloseCodeForReject(RejectAuth):     "rejected(auth)",
		CloseCodeForReject(RejectShutdown): "rejected(shutdown)",
		CloseRejectBase:                    "rejected(0)",
		CloseRejectBase + 0xffff:           "rejected(65535)",
		0x4:                                "close(0x4)",
		CloseRejectBase + 0x10000:          "close(0x10100)",
	}
	for c, want := range names {
		if got := c.String(); got != want {
			t.Errorf("CloseCode(%#x).String() = %q, want %q", uint64(c), got, want)
		}
	}
	if CloseCodeForReject(RejectShutdown) != 0x105 {
		t.Errorf("CloseCodeForReject(RejectShutdown) = %#x", uint64(CloseCodeForReject(RejectShutdown)))
	}
	for _, r := range []RejectCode{0, RejectBadHandshake, RejectShutdown, 0xffff} {
		if got, ok := CloseCodeForReject(r).Reject(); !ok || got != r {
			t.Errorf("CloseCodeForReject(%d).Reject() = %d, %v", r, got, ok)
		}
	}
	for _, c := range []CloseCode{CloseNormal, CloseLimit, CloseRejectBase - 1, CloseRejectBase + 0x10000} {
		if r, ok := c.Reject(); ok {
			t.Errorf("CloseCode(%#x).Reject() = %d, true", uint64(c), r)
		}
	}
}

func TestRejectCodes(t *testing.T) {
	want := []string{"reject(0)", "bad_handshake", "version", "auth", "denied", "shutdown", "reject(6)"}
	for r := range RejectCode(len(want)) {
		if got := r.String(); got != want[r] {
			t.Errorf("RejectCode(%d).String() = %q, want %q", r, got, want[r])
		}
		if r.Known() != (r >= RejectBadHandshake && r <= RejectShutdown) {
			t.Errorf("RejectCode(%d).Known() = %v", r, r.Known())
		}
	}
	// The untyped constants still fit the fields they always went into.
	code := int(RejectDenied)
	var wire uint16 = RejectDenied
	if code != int(wire) || RejectCode(wire) != RejectDenied {
		t.Fatal("RejectDenied")
	}
}
