package dashboard

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hop-dev/hop/internal/testenv"
)

func TestSessionStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testenv.NewDB(t)
	var live, revoked int64
	db.Pool.QueryRow(ctx, `INSERT INTO api_keys (name, prefix, key_hash) VALUES ('a', 'hop_a', '\x0a') RETURNING id`).Scan(&live)
	db.Pool.QueryRow(ctx, `INSERT INTO api_keys (name, prefix, key_hash) VALUES ('b', 'hop_b', '\x0b') RETURNING id`).Scan(&revoked)
	s := &sessionStore{pool: db.Pool}
	now := time.Date(2026, 3, 15, 12, 0, 0, 0, time.UTC)

	a, err := s.create(ctx, live, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.token) != tokenBytes || !a.expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("session %+v", a)
	}
	got, err := s.lookup(ctx, a.token, now.Add(59*time.Minute))
	if err != nil || got.keyID != live || !bytes.Equal(got.token, a.token) || got.csrf() != a.csrf() {
		t.Fatalf("lookup: %+v, %v", got, err)
	}
	if _, err := s.lookup(ctx, a.token, now.Add(time.Hour)); !errors.Is(err, errNoSession) {
		t.Errorf("lookup at expiry: %v, want errNoSession", err)
	}
	other := bytes.Clone(a.token)
	other[0] ^= 1
	if _, err := s.lookup(ctx, other, now); !errors.Is(err, errNoSession) {
		t.Errorf("lookup of another token: %v, want errNoSession", err)
	}

	b, err := s.create(ctx, revoked, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.token, b.token) || a.csrf() == b.csrf() {
		t.Fatal("two sessions share a token or CSRF token")
	}
	db.Pool.Exec(ctx, `UPDATE api_keys SET revoked_at = now() WHERE id = $1`, revoked)
	if _, err := s.lookup(ctx, b.token, now); !errors.Is(err, errNoSession) {
		t.Errorf("lookup with a revoked key: %v, want errNoSession", err)
	}

	// A later sign-in sweeps expired sessions and those of revoked keys.
	c, err := s.create(ctx, live, now.Add(2*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	db.Pool.QueryRow(ctx, `SELECT count(*) FROM dashboard_sessions`).Scan(&n)
	if n != 1 {
		t.Errorf("%d sessions after the sweep, want 1", n)
	}

	if err := s.delete(ctx, c.token); err != nil {
		t.Fatal(err)
	}
	if _, err := s.lookup(ctx, c.token, now.Add(2*time.Hour)); !errors.Is(err, errNoSession) {
		t.Errorf("lookup after delete: %v, want errNoSession", err)
	}
	if err := s.delete(ctx, c.token); err != nil {
		t.Errorf("deleting twice: %v", err)
	}
}

func TestParseToken(t *testing.T) {
	t.Parallel()
	s := session{token: bytes.Repeat([]byte{7}, tokenBytes)}
	if tok, ok := parseToken(s.cookieValue()); !ok || !bytes.Equal(tok, s.token) {
		t.Errorf("round trip failed")
	}
	for _, v := range []string{"", "abc", s.cookieValue() + "A", s.cookieValue()[:42] + "!"} {
		if _, ok := parseToken(v); ok {
			t.Errorf("parseToken(%q) accepted", v)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	f.Add("")
	f.Add(session{token: make([]byte, tokenBytes)}.cookieValue())
	f.Fuzz(func(t *testing.T, v string) {
		if tok, ok := parseToken(v); ok && len(tok) != tokenBytes {
			t.Fatalf("parseToken(%q) gave %d bytes", v, len(tok))
		}
	})
}
