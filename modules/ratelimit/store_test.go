package ratelimit

import (
	"context"
	"testing"
	"time"

	"github.com/ulule/limiter/v3"

	"github.com/hop-dev/hop/internal/testenv"
)

func TestStoreSemantics(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	s := NewStore(r.Client, r.Prefix)
	rate := limiter.Rate{Formatted: "3-M", Limit: 3, Period: time.Minute}
	key := "198.51.100.1"
	pttl := func() int64 {
		t.Helper()
		ms, err := r.Client.Do(ctx, r.Client.B().Pttl().Key(r.Prefix+key).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		return ms
	}
	check := func(step string, got limiter.Context, remaining int64, reached bool) {
		t.Helper()
		now := time.Now().Unix()
		if got.Limit != 3 || got.Remaining != remaining || got.Reached != reached || got.Reset < now+58 || got.Reset > now+60 {
			t.Errorf("%s: got %+v, want Limit 3, Remaining %d, Reached %v, Reset about %d", step, got, remaining, reached, now+60)
		}
	}

	lc, err := s.Peek(ctx, key, rate)
	if err != nil {
		t.Fatal(err)
	}
	check("peek unknown key", lc, 3, false)
	if ms := pttl(); ms != -2 {
		t.Fatalf("peek created the key (PTTL %d)", ms)
	}

	lc, err = s.Get(ctx, key, rate)
	if err != nil {
		t.Fatal(err)
	}
	check("first get", lc, 2, false)
	if ms := pttl(); ms <= 58_000 || ms > 60_000 {
		t.Errorf("window after first hit: PTTL %d ms, want about 60000", ms)
	}

	lc, err = s.Peek(ctx, key, rate)
	if err != nil {
		t.Fatal(err)
	}
	check("peek after one hit", lc, 2, false)

	lc, err = s.Increment(ctx, key, 2, rate)
	if err != nil {
		t.Fatal(err)
	}
	check("increment by 2", lc, 0, false)

	lc, err = s.Get(ctx, key, rate)
	if err != nil {
		t.Fatal(err)
	}
	check("fourth hit", lc, 0, true)

	lc, err = s.Reset(ctx, key, rate)
	if err != nil {
		t.Fatal(err)
	}
	check("reset", lc, 3, false)
	if ms := pttl(); ms != -2 {
		t.Errorf("reset left the key (PTTL %d)", ms)
	}

	// A counter that lost its TTL gets one back instead of locking the client out.
	if err := r.Client.Do(ctx, r.Client.B().Set().Key(r.Prefix+key).Value("10").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	lc, err = s.Get(ctx, key, rate)
	if err != nil {
		t.Fatal(err)
	}
	check("key without TTL", lc, 0, true)
	if ms := pttl(); ms <= 0 {
		t.Errorf("key without TTL still has none after a hit (PTTL %d)", ms)
	}
}

func TestStoreWindowExpires(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	s := NewStore(r.Client, r.Prefix)
	// A sub-second period, only possible in code, keeps the test short.
	rate := limiter.Rate{Limit: 1, Period: 200 * time.Millisecond}
	if lc, err := s.Get(ctx, "k", rate); err != nil || lc.Reached {
		t.Fatalf("first hit: %+v, %v", lc, err)
	}
	if lc, err := s.Get(ctx, "k", rate); err != nil || !lc.Reached {
		t.Fatalf("second hit: %+v, %v; want reached", lc, err)
	}
	time.Sleep(300 * time.Millisecond)
	if lc, err := s.Get(ctx, "k", rate); err != nil || lc.Reached || lc.Remaining != 0 {
		t.Fatalf("hit in the next window: %+v, %v; want allowed", lc, err)
	}
}
