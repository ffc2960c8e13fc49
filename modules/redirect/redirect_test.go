package redirect

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hop-dev/hop/internal/testenv"
	"github.com/hop-dev/hop/modules/ingest"
	"github.com/hop-dev/hop/modules/links"
)

func TestTargetRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tg := range []target{
		{state: stateLive, id: 7, status: 301, url: "https://example.com/a|b?c=d"},
		{state: stateLive, id: 1 << 40, status: 302, expiresAt: 1893456000, maxClicks: 10, clicksUsed: 3, password: true, url: "http://x.y"},
		{state: stateLive, id: 9, status: 307, forward: true, expiredURL: "https://after.example/a|b", url: "https://x.y/?q|r"},
		{state: stateLive, id: 9, status: 308, password: true, forward: true, expiredURL: "", url: "https://x.y/"},
		{state: stateGone},
		{state: stateNotFound},
	} {
		got, ok := decodeTarget(tg.encode())
		if tg.state == stateLive {
			tg.location = []string{tg.url}
		}
		if !ok || !reflect.DeepEqual(got, tg) {
			t.Fatalf("round trip of %+v gave %+v, %v", tg, got, ok)
		}
	}
	for _, bad := range []string{"", "L", "L|1|2|3", "L|x|302|0|0|0|--|0|https://a", "L|1|302|0|0|0|--|0|", "Q",
		"L|1|302|0|0|0|0|https://a", // an older hop's format
		"L|1|302|0|0|0|xx|0|https://a", "L|1|302|0|0|0|--|99|https://a", "L|1|302|0|0|0|--|-1|https://a", "L|1|302|0|0|0|--|9|https://a"} {
		if _, ok := decodeTarget(bad); ok {
			t.Fatalf("decodeTarget(%q) accepted garbage", bad)
		}
	}
}

func FuzzDecodeTarget(f *testing.F) {
	f.Add("L|1|302|0|0|0|-q|0|https://a.example")
	f.Add("L|1|302|0|5|2|pq|19|https://b.example/xhttps://a.example")
	f.Add("G")
	f.Fuzz(func(t *testing.T, v string) {
		tg, ok := decodeTarget(v)
		if ok && tg.state == stateLive {
			if again, ok2 := decodeTarget(tg.encode()); !ok2 || !reflect.DeepEqual(again, tg) {
				t.Fatalf("%q decodes to %+v which does not round-trip", v, tg)
			}
		}
	})
}

func TestExpiredAndUsedUp(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	cases := []struct {
		t             target
		expired, used bool
	}{
		{target{}, false, false},
		{target{expiresAt: 1001}, false, false},
		{target{expiresAt: 1000}, true, false},
		{target{maxClicks: 5, clicksUsed: 4}, false, false},
		{target{maxClicks: 5, clicksUsed: 5}, false, true},
		{target{clicksUsed: 5}, false, false},
	}
	for _, c := range cases {
		if got := c.t.expired(now); got != c.expired {
			t.Errorf("%+v.expired = %v, want %v", c.t, got, c.expired)
		}
		if got := c.t.usedUp(); got != c.used {
			t.Errorf("%+v.usedUp = %v, want %v", c.t, got, c.used)
		}
	}
}

// countingPublisher stands in for ingest where only the redirect itself is measured.
type countingPublisher struct{ n atomic.Int64 }

func (p *countingPublisher) Publish(context.Context, ingest.Event) { p.n.Add(1) }

type fixture struct {
	e     *echo.Echo
	pub   *countingPublisher
	store *links.Store
	h     *Handler
	slug  string
}

func setup(t testing.TB, withRedis bool) fixture {
	t.Helper()
	db := testenv.NewDB(t)
	store, err := links.NewStore(db.Pool, "s", 6)
	if err != nil {
		t.Fatal(err)
	}
	var slug string
	if err := db.Pool.QueryRow(context.Background(),
		`INSERT INTO links (slug, original_url) VALUES ('bench1', 'https://example.com/landing') RETURNING slug`).Scan(&slug); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Describe: testDescribe}
	var h *Handler
	pub := &countingPublisher{}
	if withRedis {
		r := testenv.NewRedis(t)
		cfg.RedisPrefix = r.Prefix
		h, err = New(cfg, r.Client, store, pub, prometheus.NewRegistry(), testLogger())
	} else {
		h, err = New(cfg, nil, store, pub, prometheus.NewRegistry(), testLogger())
	}
	if err != nil {
		t.Fatal(err)
	}
	e := newEcho()
	h.Register(e)
	return fixture{e: e, pub: pub, store: store, h: h, slug: slug}
}

func TestRedirectCountsGETNotHEAD(t *testing.T) {
	t.Parallel()
	for _, withRedis := range []bool{true, false} {
		f := setup(t, withRedis)
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodGet} {
			rec := httptest.NewRecorder()
			f.e.ServeHTTP(rec, httptest.NewRequest(m, "/"+f.slug, nil))
			if rec.Code != http.StatusFound || rec.Header().Get("Location") != "https://example.com/landing" || rec.Header().Get("Cache-Control") != "no-store" {
				t.Fatalf("redis=%v %s: %d %v", withRedis, m, rec.Code, rec.Header())
			}
		}
		if n := f.pub.n.Load(); n != 2 {
			t.Fatalf("redis=%v: published %d clicks for 2 GETs and a HEAD", withRedis, n)
		}
	}
}

func TestCFIPCountryOnlyFromTrustedProxy(t *testing.T) {
	t.Parallel()
	h := &Handler{trusted: nil, now: time.Now}
	e := echo.New()
	req := httptest.NewRequest(http.MethodGet, "/x", nil)
	req.RemoteAddr = "203.0.113.9:1234"
	req.Header.Set("CF-IPCountry", "NZ")
	c := e.NewContext(req, httptest.NewRecorder())
	if ev := h.event(c, target{id: 1}); ev.Country != "" {
		t.Fatalf("untrusted peer set country %q", ev.Country)
	}
	cfg := Config{Describe: testDescribe, TrustedProxies: mustPrefixes("203.0.113.0/24")}
	h.trusted = cfg.TrustedProxies
	if ev := h.event(c, target{id: 1}); ev.Country != "NZ" {
		t.Fatalf("trusted peer's country ignored: %q", ev.Country)
	}
}

// BenchmarkRedirect measures the handler in-process with a warm cache; the click
// hand-off is a counter here, so this is the cost of hop's own redirect code.
func BenchmarkRedirect(b *testing.B) {
	for _, mode := range []struct {
		name  string
		redis bool
		query string
	}{{"rueidis-client-cache", true, ""}, {"local-cache", false, ""}, {"local-cache-forward-query", false, "?utm_source=newsletter&utm_medium=email&utm_campaign=spring"}} {
		b.Run(mode.name, func(b *testing.B) {
			f := setup(b, mode.redis)
			req := httptest.NewRequest(http.MethodGet, "/"+f.slug+mode.query, nil)
			req.Header.Set("User-Agent", "Mozilla/5.0")
			rec := httptest.NewRecorder()
			f.e.ServeHTTP(rec, req) // warm the cache
			time.Sleep(50 * time.Millisecond)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				w := discardWriter{h: http.Header{}}
				f.e.ServeHTTP(&w, req)
			}
		})
	}
	b.Run("bare-echo-302", func(b *testing.B) {
		e := echo.New()
		e.GET("/:slug", func(c echo.Context) error { return c.Redirect(http.StatusFound, "https://example.com/landing") })
		req := httptest.NewRequest(http.MethodGet, "/bench1", nil)
		b.ReportAllocs()
		for b.Loop() {
			w := discardWriter{h: http.Header{}}
			e.ServeHTTP(&w, req)
		}
	})
}

type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

// A target written with an internationalized host or non-ASCII characters leaves in
// Location as a URI: punycode host, percent-encoded bytes, the rest exactly as given.
func TestLocationIsASCII(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://example.com/a%20b?q=1":                     "https://example.com/a%20b?q=1",
		"https://bücher.example/päth?q=ü#ß":                 "https://xn--bcher-kva.example/p%C3%A4th?q=%C3%BC#%C3%9F",
		"https://例え.jp:8443/パス":                             "https://xn--r8jz45g.jp:8443/%E3%83%91%E3%82%B9",
		"https://usér:pw@bücher.example":                    "https://us%C3%A9r:pw@xn--bcher-kva.example",
		"https://[2001:db8::1]:8080/ü":                      "https://[2001:db8::1]:8080/%C3%BC",
		"https://example.com/?next=https://bücher.example/": "https://example.com/?next=https://b%C3%BCcher.example/",
	} {
		tg := targetOf(links.Link{ID: 1, RedirectStatus: 302, OriginalURL: in, ExpiredURL: &in})
		if tg.url != want || tg.location[0] != want || tg.expiredURL != want {
			t.Errorf("%q: Location %q, expired %q, want %q", in, tg.location[0], tg.expiredURL, want)
		}
	}
}
