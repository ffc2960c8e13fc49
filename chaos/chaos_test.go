package main

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"
)

// TestScenarios runs every scenario at a small size (a few thousand clicks each) and
// fails on any click lost or counted twice.
func TestScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real hop, PostgreSQL and Redis processes; not in -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	opts := options{phase: 600 * time.Millisecond, conns: 8, links: 5, drain: 30 * time.Second,
		verbose: func(format string, args ...any) { t.Logf(format, args...) }}
	var log bytes.Buffer
	results, err := runAll(ctx, "..", allScenarios(), opts, &log)
	var table bytes.Buffer
	printTable(&table, results)
	t.Logf("\n%s%s", table.String(), log.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(allScenarios()) {
		t.Fatalf("%d scenarios ran, want %d", len(results), len(allScenarios()))
	}
	for _, r := range results {
		if r.answered == 0 {
			t.Errorf("%s: no redirect was answered", r.name)
		}
		if !r.ok() {
			t.Errorf("%s: %d answered, %d stored, %d counted: want 0 lost and 0 duplicated, got %d lost and %d duplicated; %v",
				r.name, r.answered, r.stored, r.counted, r.lost, r.dup, r.problems)
		}
		if r.extra > r.inFlight {
			t.Errorf("%s: %d stored clicks of requests in flight, but only %d were in flight", r.name, r.extra, r.inFlight)
		}
	}
}

func FuzzParseMarker(f *testing.F) {
	f.Add(refererPrefix + "42")
	f.Add("https://example.com/")
	f.Fuzz(func(t *testing.T, ref string) {
		seq, err := parseMarker(ref)
		if err == nil && seq >= 0 {
			if back, err := parseMarker(refererPrefix + strconv.FormatInt(seq, 10)); err != nil || back != seq {
				t.Fatalf("%q -> %d does not round-trip (%d, %v)", ref, seq, back, err)
			}
		}
	})
}
