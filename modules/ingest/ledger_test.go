package ingest

import (
	"bytes"
	"slices"
	"testing"
)

// An entry stays in the ledger after the group read it, until the group acknowledged
// it: a reader that holds it uncommitted (PostgreSQL down) and dies loses it, and a
// Redis without persistence does too. What is left is spilled, payloads intact, once.
func TestLedgerKeepsUntilAcknowledged(t *testing.T) {
	var spilled [][]byte
	l := &ledger{spill: func(entries [][]byte) error {
		for _, e := range entries {
			spilled = append(spilled, bytes.Clone(e))
		}
		return nil
	}}
	l.add(streamID{ms: 1}, 1, []byte("one"))
	l.add(streamID{ms: 2}, 2, []byte("two"))
	l.add(streamID{ms: 3}, 3, []byte("three"))

	// The oldest pending entry is 2: entry 1 is acknowledged, 2 and 3 are not.
	l.acked(streamID{ms: 2}, false)
	kept, gone, err := l.spillAll()
	if err != nil || kept != 5 || gone != 0 {
		t.Fatalf("spillAll = %d kept, %d gone, %v; want 5, 0, nil", kept, gone, err)
	}
	if len(spilled) != 2 || string(spilled[0]) != "two" || string(spilled[1]) != "three" {
		t.Fatalf("spilled %q, want [two three]", spilled)
	}
	if kept, gone, _, _ := l.lost(lastStreamID, streamID{ms: 3}); kept != 0 || gone != 0 {
		t.Fatalf("after a spill, lost = %d kept, %d gone; want 0, 0", kept, gone)
	}

	// With nothing pending, the last delivered entry is acknowledged too.
	l.add(streamID{ms: 4}, 4, []byte("four"))
	l.add(streamID{ms: 5}, 5, []byte("five"))
	l.acked(streamID{ms: 4}, true)
	spilled = nil
	if kept, gone, atLeast, err := l.lost(lastStreamID, streamID{ms: 5}); kept != 5 || gone != 0 || atLeast || err != nil {
		t.Fatalf("lost = %d kept, %d gone, %v, %v; want 5, 0, false, nil", kept, gone, atLeast, err)
	}
	if len(spilled) != 1 || string(spilled[0]) != "five" {
		t.Fatalf("spilled %q, want [five]", spilled)
	}
	if l.bytes != 0 {
		t.Fatalf("ledger holds %d bytes after giving everything up, want 0", l.bytes)
	}
}

// The ledger holds a copy of each payload: the hand-off reuses its buffers.
func TestLedgerCopiesPayload(t *testing.T) {
	var got []byte
	l := &ledger{spill: func(entries [][]byte) error { got = entries[0]; return nil }}
	buf := []byte("abc")
	l.add(streamID{ms: 1}, 1, buf)
	copy(buf, "xyz")
	if _, _, err := l.spillAll(); err != nil || string(got) != "abc" {
		t.Fatalf("spilled %q (%v), want abc", got, err)
	}
}

// Only entries recorded before the stream was looked at count as lost: one published
// after the look may be in the stream, even when the look found it empty.
func TestLedgerLossStopsAtTheLook(t *testing.T) {
	var spilled []string
	l := &ledger{spill: func(entries [][]byte) error {
		for _, e := range entries {
			spilled = append(spilled, string(e))
		}
		return nil
	}}
	if kept, gone, _, _ := l.lost(lastStreamID, l.newest()); kept != 0 || gone != 0 {
		t.Fatalf("empty ledger: lost = %d kept, %d gone; want 0, 0", kept, gone)
	}
	l.add(streamID{ms: 1}, 1, []byte("one"))
	l.add(streamID{ms: 2}, 2, []byte("two"))
	upTo := l.newest() // the look at the stream starts here
	l.add(streamID{ms: 3}, 4, []byte("three"))
	if kept, gone, _, err := l.lost(lastStreamID, upTo); kept != 3 || gone != 0 || err != nil {
		t.Fatalf("lost = %d kept, %d gone, %v; want 3, 0, nil", kept, gone, err)
	}
	if len(spilled) != 2 || spilled[0] != "one" || spilled[1] != "two" {
		t.Fatalf("spilled %q, want [one two]", spilled)
	}
	// The entry published after the look is still remembered, as not yet acknowledged.
	if n := l.newest(); n != (streamID{ms: 3}) {
		t.Fatalf("newest = %v after the loss, want 3-0", n)
	}
	// A stream that now starts at 3 keeps it.
	if kept, gone, _, _ := l.lost(streamID{ms: 3}, l.newest()); kept != 0 || gone != 0 {
		t.Fatalf("lost before 3 = %d kept, %d gone; want 0, 0", kept, gone)
	}
}

// XADDs finish out of order when a publish XADDs on its own (before the hand-off's Run
// starts, or after it stops) while the sender XADDs a batch. Seen in
// TestStreamResetRecoversUndelivered: 120 clicks in entries 5-1, 5-2 and then 5-0 were
// neither recovered nor counted lost after a reset, because the loss scan stopped at the
// first record newer than the newest-recorded bound. The ledger keeps ID order itself.
func TestLedgerOrdersEntriesFinishedOutOfOrder(t *testing.T) {
	var spilled []string
	l := &ledger{spill: func(entries [][]byte) error {
		for _, e := range entries {
			spilled = append(spilled, string(e))
		}
		return nil
	}}
	l.add(streamID{ms: 5, seq: 1}, 1, []byte("b"))
	l.add(streamID{ms: 5, seq: 2}, 118, []byte("c"))
	l.add(streamID{ms: 5, seq: 0}, 1, []byte("a"))
	if n := l.newest(); n != (streamID{ms: 5, seq: 2}) {
		t.Fatalf("newest = %v, want 5-2", n)
	}
	if kept, gone, _, err := l.lost(lastStreamID, l.newest()); kept != 120 || gone != 0 || err != nil {
		t.Fatalf("lost = %d kept, %d gone, %v; want 120, 0, nil", kept, gone, err)
	}
	if !slices.Equal(spilled, []string{"a", "b", "c"}) {
		t.Fatalf("spilled %q, want [a b c]", spilled)
	}

	// Acknowledgement below a floor forgets exactly the entries below it.
	l.add(streamID{ms: 7}, 1, []byte("e"))
	l.add(streamID{ms: 6}, 1, []byte("d"))
	l.add(streamID{ms: 8}, 1, []byte("f"))
	l.acked(streamID{ms: 7}, true)
	spilled = nil
	if kept, _, err := l.spillAll(); kept != 1 || err != nil || !slices.Equal(spilled, []string{"f"}) {
		t.Fatalf("after acked(7): spilled %q (%d, %v), want [f]", spilled, kept, err)
	}
}
