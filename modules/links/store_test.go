package links

import (
	"testing"

	"github.com/hop-dev/hop/internal/testenv"
)

func TestGeneratedSlugSkipsCustomSlugThatTookIt(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	s, err := NewStore(db.Pool, "secret", 6)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	first, err := s.create(ctx, newLink{URL: "https://example.com/1", RedirectStatus: 302})
	if err != nil {
		t.Fatal(err)
	}
	// A custom link (which itself consumes id first.ID+1) takes the slug the
	// generator will produce for the id after it.
	next, err := s.slug.slug(first.ID + 2)
	if err != nil {
		t.Fatal(err)
	}
	custom, err := s.create(ctx, newLink{URL: "https://example.com/custom", Slug: next, RedirectStatus: 302})
	if err != nil {
		t.Fatal(err)
	}
	if custom.ID != first.ID+1 {
		t.Fatalf("custom link got id %d, want %d", custom.ID, first.ID+1)
	}
	got, err := s.create(ctx, newLink{URL: "https://example.com/2", RedirectStatus: 302})
	if err != nil {
		t.Fatalf("generated create after a collision: %v", err)
	}
	if got.Slug == next || got.ID != first.ID+3 {
		t.Fatalf("generated link %d %q: want id %d and a slug other than %q", got.ID, got.Slug, first.ID+3, next)
	}
}

func TestSlugsDependOnSecret(t *testing.T) {
	a, _ := newSlugger("one", 6)
	b, _ := newSlugger("two", 6)
	a2, _ := newSlugger("one", 6)
	sa, _ := a.slug(42)
	sb, _ := b.slug(42)
	sa2, _ := a2.slug(42)
	if sa == sb {
		t.Fatalf("secrets one and two give the same slug %q", sa)
	}
	if sa != sa2 {
		t.Fatalf("same secret gave %q and %q", sa, sa2)
	}
	seen := map[string]bool{}
	for id := int64(1); id <= 5000; id++ {
		s, err := a.slug(id)
		if err != nil {
			t.Fatal(err)
		}
		if len(s) < 6 || seen[s] || !ValidSlugSyntax(s) {
			t.Fatalf("slug %q for id %d: too short, duplicate or invalid", s, id)
		}
		seen[s] = true
	}
}
