package redirect

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hop-dev/hop/internal/testenv"
	"github.com/hop-dev/hop/modules/domains"
	"github.com/hop-dev/hop/modules/links"
)

// A link's Redis key names its domain and slug, and an invalidation of that key names
// the same link again; the default domain keeps the keys of before domains.
func TestLinkKeysRoundTrip(t *testing.T) {
	c := &cache{prefix: "hop:"}
	for _, tc := range []struct {
		k   linkKey
		key string
	}{
		{linkKey{domain: defaultDomain, slug: "abc"}, "hop:link:abc"},
		{linkKey{domain: 7, slug: "abc"}, "hop:link:7:abc"},
		{linkKey{domain: 12345, slug: "a-b_C"}, "hop:link:12345:a-b_C"},
	} {
		if got := c.key(tc.k); got != tc.key {
			t.Errorf("key(%v) = %q, want %q", tc.k, got, tc.key)
		}
		back, ok := keyOf(tc.key[len("hop:link:"):])
		if !ok || back != tc.k {
			t.Errorf("keyOf(%q) = %v, %v; want %v", tc.key, back, ok, tc.k)
		}
	}
	if _, ok := keyOf("x:abc"); ok {
		t.Error("keyOf accepted a key whose domain is not a number")
	}
}

// BenchmarkRedirectDomains measures what choosing the domain by Host adds to a warm
// redirect: the same handler and cache, a link on the default domain requested
// without a registered Host, and one on a branded domain requested with its Host.
func BenchmarkRedirectDomains(b *testing.B) {
	db := testenv.NewDB(b)
	ctx := context.Background()
	store, err := links.NewStore(db.Pool, "s", 6)
	if err != nil {
		b.Fatal(err)
	}
	dstore := domains.NewStore(db.Pool)
	reg, err := domains.NewRegistry(ctx, domains.Config{BaseURL: "https://hop.test"}, dstore, testLogger())
	if err != nil {
		b.Fatal(err)
	}
	d, err := dstore.Create(ctx, domains.Domain{Host: "go.example.com", BaseURL: "https://go.example.com"})
	if err != nil {
		b.Fatal(err)
	}
	if err := reg.Refresh(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO links (slug, original_url) VALUES ('bench1', 'https://example.com/a');
		INSERT INTO links (slug, original_url, domain_id) VALUES ('bench1', 'https://example.com/b', `+strconv.FormatInt(d.ID, 10)+`)`); err != nil {
		b.Fatal(err)
	}
	for _, mode := range []struct{ name, host, want string }{
		{"default-domain", "hop.test", "https://example.com/a"},
		{"branded-domain-host", "go.example.com", "https://example.com/b"},
		{"branded-domain-host-mixed-case-port", "Go.Example.com:443", "https://example.com/b"}, // lower-casing allocates
	} {
		b.Run(mode.name, func(b *testing.B) {
			h, err := New(Config{Domains: reg}, nil, store, &countingPublisher{}, prometheus.NewRegistry(), testLogger())
			if err != nil {
				b.Fatal(err)
			}
			e := newEcho()
			h.Register(e)
			req := httptest.NewRequest(http.MethodGet, "/bench1", nil)
			req.Host = mode.host
			req.Header.Set("User-Agent", "Mozilla/5.0")
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req) // warm the cache
			if loc := rec.Header().Get("Location"); loc != mode.want {
				b.Fatalf("Location %q, want %q", loc, mode.want)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				w := discardWriter{h: http.Header{}}
				e.ServeHTTP(&w, req)
			}
		})
	}
}
