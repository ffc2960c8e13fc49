package horizon_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/hop-dev/hop/internal/horizon"
	"github.com/hop-dev/hop/internal/testenv"
)

// An open transaction that has written in hop's database holds the horizon at its own
// xid: rows it may still commit are never taken as final. Once it ends, the horizon
// passes it.
func TestReadStopsAtAnOpenWriter(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var open uint64
	if err := tx.QueryRow(ctx, `SELECT pg_current_xact_id()`).Scan(&open); err != nil {
		t.Fatal(err)
	}
	// Later transactions commit while the writer stays open.
	for range 3 {
		if _, err := db.Pool.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
			t.Fatal(err)
		}
	}
	h, err := horizon.Read(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	if h != open {
		t.Fatalf("horizon = %d with transaction %d open, want %d", h, open, open)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if h, err = horizon.Read(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
	if h <= open+3 {
		t.Fatalf("horizon = %d after transaction %d and three later ones ended, want above %d", h, open, open+3)
	}
}

func TestPositionOrder(t *testing.T) {
	a, b := uuid.MustParse("00000000-0000-7000-8000-000000000001"), uuid.MustParse("00000000-0000-7000-8000-000000000002")
	ordered := []horizon.Position{{XID: 1}, {XID: 1, Event: a}, {XID: 1, Event: b}, {XID: 2}, {XID: 2, Event: a}}
	for i, p := range ordered {
		for j, q := range ordered {
			if got := p.Less(q); got != (i < j) {
				t.Errorf("%v.Less(%v) = %v, want %v", p, q, got, i < j)
			}
		}
	}
}

// A position reaches the horizon when it is at the start of a transaction the horizon
// has not passed; one inside a transaction (after one of its events) never does.
func TestPositionReached(t *testing.T) {
	e := uuid.MustParse("00000000-0000-7000-8000-000000000001")
	for _, c := range []struct {
		p    horizon.Position
		h    uint64
		want bool
	}{
		{horizon.Position{XID: 5}, 5, true},
		{horizon.Position{XID: 5}, 4, true},
		{horizon.Position{XID: 5}, 6, false},
		{horizon.Position{XID: 5, Event: e}, 5, false},
		{horizon.Position{XID: 5, Event: e}, 6, false},
	} {
		if got := c.p.Reached(c.h); got != c.want {
			t.Errorf("%v.Reached(%d) = %v, want %v", c.p, c.h, got, c.want)
		}
	}
}

func TestXIDText(t *testing.T) {
	for _, x := range []uint64{0, 1, 1 << 40, ^uint64(0)} {
		got, err := horizon.ParseXID(horizon.FormatXID(x))
		if err != nil || got != x {
			t.Errorf("ParseXID(FormatXID(%d)) = %d, %v", x, got, err)
		}
	}
	for _, s := range []string{"", "-1", "12a", "18446744073709551616"} {
		if _, err := horizon.ParseXID(s); err == nil {
			t.Errorf("ParseXID(%q) succeeded", s)
		}
	}
}
