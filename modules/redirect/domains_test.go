package redirect

import "testing"

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
