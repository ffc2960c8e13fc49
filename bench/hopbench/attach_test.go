package main

import (
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
)

// Split reads never lose or double an event line.
func TestCountEvents(t *testing.T) {
	s := strings.Repeat("event: click\nid: 1\ndata: {\"e\":\"event: clic\"}\n\n", 1000)
	var n atomic.Int64
	countEvents(iotest.OneByteReader(strings.NewReader(s)), &n)
	if n.Load() != 1000 {
		t.Fatal(n.Load())
	}
	n.Store(0)
	countEvents(iotest.HalfReader(strings.NewReader(s)), &n)
	if n.Load() != 1000 {
		t.Fatal(n.Load())
	}
}
