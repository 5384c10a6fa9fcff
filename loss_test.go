package yomo_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
)

// A zipper that loses a Source's frames in the mesh for want of a path
// tells that Source: its error handler gets *LostError with the count.
func TestMeshLossReportedToSource(t *testing.T) {
	a, b, link := meshPairVia(t, true)
	fn := upperFn(t, b, "far", 7)
	defer fn.Close()
	var mu sync.Mutex
	var lost uint64
	var other []error
	src := yomo.NewSource("src", "", yomo.WithInMemory(a))
	src.SetErrorHandler(func(err error) {
		mu.Lock()
		defer mu.Unlock()
		var le *yomo.LostError
		if errors.As(err, &le) && le.Tag == 7 && le.Zipper == "a" {
			lost += le.Count
			return
		}
		other = append(other, err)
	})
	if err := src.Connect(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	eventually(t, 10*time.Second, func() bool {
		for _, r := range a.Stats().Routes {
			if r.Function == "far" && r.Via == "b" {
				return true
			}
		}
		return false
	}, func() string { return fmt.Sprintf("a has no route to far via b: %+v", a.Stats().Routes) })

	// The link is cut (b and its function live on): the tag's frames
	// have no path. (Closing b instead raced: when b closed its
	// function's connection first, it withdrew the route before the
	// link failed, and the frames were only unroutable, not lost on a
	// path that failed.)
	link.Cut()
	eventually(t, 10*time.Second, func() bool {
		for _, l := range a.Stats().Links {
			if l.Peer == "b" && l.State != "up" {
				return true
			}
		}
		return false
	}, func() string { return fmt.Sprintf("link to b still up: %+v", a.Stats().Links) })
	const n = 5
	for i := 0; i < n; i++ {
		if err := src.Write(7, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	// They wait up to 2 s for a path, then are lost and reported.
	eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return lost == n
	}, func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprintf("reported %d lost, want %d; other errors %v; stats %+v", lost, n, other, a.Stats())
	})
	if u := a.Stats().UnroutableByTag[7]; u != n {
		t.Fatalf("unroutable for tag 7: %d, want %d", u, n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(other) > 0 {
		t.Fatalf("other errors reported: %v", other)
	}
}
