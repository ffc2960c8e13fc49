package ingest

import (
	"slices"
	"testing"
)

// An entry stays in the ledger after the group read it, until the group acknowledged
// it: a reader that holds it uncommitted (PostgreSQL down) and dies loses it, and a
// Redis without persistence does too. What is left is spilled, payloads intact, once.
func TestLedgerKeepsUntilAcknowledged(t *testing.T) {
	l, spilled := spillingLedger()
	l.add(streamID{ms: 1}, 1, []byte("one"))
	l.add(streamID{ms: 2}, 2, []byte("two"))
	l.add(streamID{ms: 3}, 3, []byte("three"))

	// The oldest pending entry is 2: entry 1 is acknowledged, 2 and 3 are not.
	l.acked(streamID{ms: 2}, false)
	kept, gone, err := l.spillAll()
	if err != nil || kept != 5 || gone != 0 {
		t.Fatalf("spillAll = %d kept, %d gone, %v; want 5, 0, nil", kept, gone, err)
	}
	if len(*spilled) != 2 || (*spilled)[0] != "two" || (*spilled)[1] != "three" {
		t.Fatalf("spilled %q, want [two three]", *spilled)
	}
	if kept, gone, _, _ := l.lost(ids(l)); kept != 0 || gone != 0 {
		t.Fatalf("after a spill, lost = %d kept, %d gone; want 0, 0", kept, gone)
	}

	// With nothing pending, the last delivered entry is acknowledged too.
	l.add(streamID{ms: 4}, 4, []byte("four"))
	l.add(streamID{ms: 5}, 5, []byte("five"))
	l.acked(streamID{ms: 4}, true)
	*spilled = nil
	if kept, gone, atLeast, err := l.lost(ids(l)); kept != 5 || gone != 0 || atLeast || err != nil {
		t.Fatalf("lost = %d kept, %d gone, %v, %v; want 5, 0, false, nil", kept, gone, atLeast, err)
	}
	if len(*spilled) != 1 || (*spilled)[0] != "five" {
		t.Fatalf("spilled %q, want [five]", *spilled)
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

// Only the entries found missing are taken; one the stream still holds, or one
// recorded after the look, stays until the group acknowledges it.
func TestLedgerTakesOnlyWhatIsMissing(t *testing.T) {
	l, spilled := spillingLedger()
	if kept, gone, _, _ := l.lost(ids(l)); kept != 0 || gone != 0 {
		t.Fatalf("empty ledger: lost = %d kept, %d gone; want 0, 0", kept, gone)
	}
	l.add(streamID{ms: 1}, 1, []byte("one"))
	l.add(streamID{ms: 2}, 2, []byte("two"))
	l.add(streamID{ms: 3}, 4, []byte("three")) // still in the stream
	missing := map[streamID]bool{{ms: 1}: true, {ms: 2}: true}
	l.add(streamID{ms: 4}, 8, []byte("four")) // recorded after the look
	if kept, gone, _, err := l.lost(missing); kept != 3 || gone != 0 || err != nil {
		t.Fatalf("lost = %d kept, %d gone, %v; want 3, 0, nil", kept, gone, err)
	}
	if !slices.Equal(*spilled, []string{"one", "two"}) {
		t.Fatalf("spilled %q, want [one two]", *spilled)
	}
	if got := ids(l); len(got) != 2 || !got[streamID{ms: 3}] || !got[streamID{ms: 4}] {
		t.Fatalf("ledger holds %v after the loss, want 3-0 and 4-0", got)
	}
}

// ids is every record's ID, as a missing set that takes them all.
func ids(l *ledger) map[streamID]bool {
	out := map[streamID]bool{}
	for _, r := range l.snapshot() {
		out[r.id] = true
	}
	return out
}

// XADDs finish out of order when a publish XADDs on its own (before the hand-off's Run
// starts, or after it stops) while the sender XADDs a batch. Seen in
// TestStreamResetRecoversUndelivered: 120 clicks in entries 5-1, 5-2 and then 5-0 were
// neither recovered nor counted lost after a reset, because the loss scan read the
// records as a prefix in ID order. The ledger keeps ID order itself, which the
// trimmer's acknowledgement (a prefix below a floor) relies on.
func TestLedgerOrdersEntriesFinishedOutOfOrder(t *testing.T) {
	l, spilled := spillingLedger()
	l.add(streamID{ms: 5, seq: 1}, 1, []byte("b"))
	l.add(streamID{ms: 5, seq: 2}, 118, []byte("c"))
	l.add(streamID{ms: 5, seq: 0}, 1, []byte("a"))
	var order []streamID
	for _, r := range l.snapshot() {
		order = append(order, r.id)
	}
	if want := []streamID{{5, 0}, {5, 1}, {5, 2}}; !slices.Equal(order, want) {
		t.Fatalf("records in order %v, want %v", order, want)
	}
	if kept, gone, _, err := l.lost(ids(l)); kept != 120 || gone != 0 || err != nil {
		t.Fatalf("lost = %d kept, %d gone, %v; want 120, 0, nil", kept, gone, err)
	}
	if !slices.Equal(*spilled, []string{"a", "b", "c"}) {
		t.Fatalf("spilled %q, want [a b c]", *spilled)
	}

	// Acknowledgement below a floor forgets exactly the entries below it.
	l.add(streamID{ms: 7}, 1, []byte("e"))
	l.add(streamID{ms: 6}, 1, []byte("d"))
	l.add(streamID{ms: 8}, 1, []byte("f"))
	l.acked(streamID{ms: 7}, true)
	*spilled = nil
	if kept, _, err := l.spillAll(); kept != 1 || err != nil || !slices.Equal(*spilled, []string{"f"}) {
		t.Fatalf("after acked(7): spilled %q (%d, %v), want [f]", *spilled, kept, err)
	}
}

// spillingLedger is a ledger whose spilled entries are collected in *spilled.
func spillingLedger() (*ledger, *[]string) {
	var spilled []string
	return &ledger{spill: func(entries [][]byte) error {
		for _, e := range entries {
			spilled = append(spilled, string(e))
		}
		return nil
	}}, &spilled
}
