package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hop-dev/hop/internal/testenv"
)

// visit sends GET path to h as a visitor of host (the Host header), with extra
// header pairs, and returns the status and Location.
func (h *instance) visit(t testing.TB, host, path string, headers ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, h.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("GET %s on %s: %v", path, host, err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}

func mustVisit(t testing.TB, h *instance, host, path string, wantStatus int, wantLocation string, headers ...string) {
	t.Helper()
	code, loc := h.visit(t, host, path, headers...)
	if code != wantStatus || loc != wantLocation {
		t.Fatalf("GET %s on host %s: %d %q, want %d %q", path, host, code, loc, wantStatus, wantLocation)
	}
}

func (h *instance) addDomain(t testing.TB, body map[string]any) map[string]any {
	t.Helper()
	r := h.api(t, http.MethodPost, "/domains", body)
	mustStatus(t, r, http.StatusCreated)
	return r.JSON(t)
}

// Two domains hold the same slug with different targets; the Host header picks one,
// whatever its case and port, and an unregistered Host gets the default domain.
func TestDomainsSameSlugByHost(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)

	d := h.addDomain(t, map[string]any{"host": "Go.Example.COM."})
	if d["host"] != "go.example.com" || d["base_url"] != "https://go.example.com" || d["default"] != false || d["links"] != float64(0) {
		t.Fatalf("created domain: %v", d)
	}
	mustProblem(t, h.api(t, http.MethodPost, "/domains", map[string]any{"host": "go.example.com"}), http.StatusConflict)
	mustProblem(t, h.api(t, http.MethodPost, "/domains", map[string]any{"host": "hop.test"}), http.StatusConflict)
	mustProblem(t, h.api(t, http.MethodPost, "/domains", map[string]any{"host": "go.example.com:8080"}), http.StatusBadRequest)
	idn := h.addDomain(t, map[string]any{"host": "Bücher.example", "base_url": "http://xn--bcher-kva.example:8080/"})
	if idn["host"] != "xn--bcher-kva.example" || idn["base_url"] != "http://xn--bcher-kva.example:8080" {
		t.Fatalf("IDN domain: %v", idn)
	}

	a := h.createLink(t, map[string]any{"url": "https://a.example/", "slug": "same"})
	b := h.createLink(t, map[string]any{"url": "https://b.example/", "slug": "same", "domain": "GO.example.com"})
	if a["domain"] != "hop.test" || a["short_url"] != "https://hop.test/same" {
		t.Fatalf("default-domain link: %v", a)
	}
	if b["domain"] != "go.example.com" || b["short_url"] != "https://go.example.com/same" || b["id"] == a["id"] {
		t.Fatalf("branded link: %v", b)
	}
	mustProblem(t, h.api(t, http.MethodPost, "/links", map[string]any{"url": "https://c.example/", "slug": "same", "domain": "go.example.com"}), http.StatusConflict)
	mustProblem(t, h.api(t, http.MethodPost, "/links", map[string]any{"url": "https://c.example/", "domain": "nowhere.example"}), http.StatusBadRequest)
	// A link may not point at any of hop's own domains: it would loop.
	mustProblem(t, h.api(t, http.MethodPost, "/links", map[string]any{"url": "https://go.example.com/x"}), http.StatusBadRequest)

	mustVisit(t, h, "go.example.com", "/same", http.StatusFound, "https://b.example/")
	mustVisit(t, h, "GO.EXAMPLE.COM:8443", "/same", http.StatusFound, "https://b.example/")
	mustVisit(t, h, "hop.test", "/same", http.StatusFound, "https://a.example/")
	mustVisit(t, h, "unregistered.example", "/same", http.StatusFound, "https://a.example/")
	mustVisit(t, h, "127.0.0.1:1", "/same", http.StatusFound, "https://a.example/")

	// Addressing by ?domain= on the management routes.
	got := h.api(t, http.MethodGet, "/links/same?domain=go.example.com", nil)
	mustStatus(t, got, http.StatusOK)
	if got.JSON(t)["original_url"] != "https://b.example/" {
		t.Fatalf("GET ?domain=: %s", got.Body)
	}
	got = h.api(t, http.MethodGet, "/links/same", nil)
	if got.JSON(t)["original_url"] != "https://a.example/" {
		t.Fatalf("GET without domain: %s", got.Body)
	}
	mustProblem(t, h.api(t, http.MethodGet, "/links/same?domain=nowhere.example", nil), http.StatusNotFound)

	// Generated slugs come from one sequence: never the same on two domains.
	g1 := h.createLink(t, map[string]any{"url": "https://g.example/1"})
	g2 := h.createLink(t, map[string]any{"url": "https://g.example/2", "domain": "go.example.com"})
	if g1["slug"] == g2["slug"] {
		t.Fatalf("generated slug %v on both domains", g1["slug"])
	}

	// Bulk create takes a domain per item.
	bulk := h.api(t, http.MethodPost, "/links/bulk", map[string]any{"links": []map[string]any{
		{"url": "https://bulk.example/1", "slug": "bulk1", "domain": "go.example.com"},
		{"url": "https://bulk.example/2", "slug": "bulk1"},
		{"url": "https://bulk.example/3", "slug": "bulk2", "domain": "nowhere.example"},
	}})
	mustStatus(t, bulk, http.StatusMultiStatus)
	if !bytes.Contains(bulk.Body, []byte(`"short_url":"https://go.example.com/bulk1"`)) || !bytes.Contains(bulk.Body, []byte(`"short_url":"https://hop.test/bulk1"`)) {
		t.Fatalf("bulk: %s", bulk.Body)
	}

	// A dry run checks slugs per domain too: bulk1 is taken on both, bulk9 on neither,
	// and an unknown domain is refused.
	dry := h.api(t, http.MethodPost, "/links/bulk?dry_run=true", map[string]any{"links": []map[string]any{
		{"url": "https://bulk.example/4", "slug": "bulk1", "domain": "go.example.com"},
		{"url": "https://bulk.example/5", "slug": "bulk9", "domain": "go.example.com"},
		{"url": "https://bulk.example/6", "slug": "bulk9"},
		{"url": "https://bulk.example/7", "slug": "bulk1"},
		{"url": "https://bulk.example/8", "slug": "bulk8", "domain": "nowhere.example"},
	}})
	mustStatus(t, dry, http.StatusOK)
	var statuses []int
	for _, r := range dry.JSON(t)["results"].([]any) {
		statuses = append(statuses, int(r.(map[string]any)["status"].(float64)))
	}
	if fmt.Sprint(statuses) != "[409 201 201 409 400]" {
		t.Fatalf("dry run statuses %v, want [409 201 201 409 400]: %s", statuses, dry.Body)
	}

	// The list filters by domain; GET /domains counts live links.
	list := h.api(t, http.MethodGet, "/links?domain=go.example.com", nil)
	mustStatus(t, list, http.StatusOK)
	if n := len(list.JSON(t)["links"].([]any)); n != 3 {
		t.Fatalf("links on go.example.com: %d, want 3: %s", n, list.Body)
	}
	if n := len(h.api(t, http.MethodGet, "/links", nil).JSON(t)["links"].([]any)); n != 6 {
		t.Fatalf("links on all domains: %d, want 6", n)
	}
	ds := h.api(t, http.MethodGet, "/domains", nil)
	mustStatus(t, ds, http.StatusOK)
	want := `[hop.test:3:true go.example.com:3:false xn--bcher-kva.example:0:false]`
	var seen []string
	for _, x := range ds.JSON(t)["domains"].([]any) {
		m := x.(map[string]any)
		seen = append(seen, fmt.Sprintf("%v:%v:%v", m["host"], m["links"], m["default"]))
	}
	if fmt.Sprint(seen) != want {
		t.Fatalf("domains %v, want %s", seen, want)
	}

	// The QR code is of the link's own short URL: the branded one differs.
	qrA := h.do(t, http.MethodGet, "/same/qr?format=svg", nil)
	req, _ := http.NewRequest(http.MethodGet, h.URL+"/same/qr?format=svg", nil)
	req.Host = "go.example.com"
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	qrB, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if qrA.Status != http.StatusOK || resp.StatusCode != http.StatusOK || bytes.Equal(qrA.Body, qrB) {
		t.Fatalf("QR codes: %d and %d, equal %v", qrA.Status, resp.StatusCode, bytes.Equal(qrA.Body, qrB))
	}
}

// Each domain has its own fallbacks; the default domain's come from HOP_*_REDIRECT.
func TestDomainFallbacks(t *testing.T) {
	t.Parallel()
	h := startHop(t, func(cfg map[string]any) {
		cfg["root_redirect"] = "https://default.example/root"
		cfg["not_found_redirect"] = "https://default.example/404"
		cfg["expired_redirect"] = "https://default.example/expired"
	})
	h.addDomain(t, map[string]any{"host": "go.example.com", "root_redirect": "https://go.example.net/",
		"not_found_redirect": "https://go.example.net/404", "expired_redirect": nil})
	h.createLink(t, map[string]any{"url": "https://a.example/", "slug": "gone1"})
	h.createLink(t, map[string]any{"url": "https://b.example/", "slug": "gone1", "domain": "go.example.com"})
	mustStatus(t, h.api(t, http.MethodDelete, "/links/gone1", nil), http.StatusNoContent)
	mustStatus(t, h.api(t, http.MethodDelete, "/links/gone1?domain=go.example.com", nil), http.StatusNoContent)

	mustVisit(t, h, "hop.test", "/", http.StatusFound, "https://default.example/root")
	mustVisit(t, h, "hop.test", "/nope1", http.StatusFound, "https://default.example/404")
	mustVisit(t, h, "hop.test", "/gone1", http.StatusFound, "https://default.example/expired")
	mustVisit(t, h, "go.example.com", "/", http.StatusFound, "https://go.example.net/")
	mustVisit(t, h, "go.example.com", "/nope1", http.StatusFound, "https://go.example.net/404")
	mustVisit(t, h, "go.example.com", "/gone1", http.StatusGone, "") // no expired fallback: hop's answer

	// PATCH changes a domain's fallbacks (null: hop's own page again); the default
	// domain is configured, not patched.
	p := h.api(t, http.MethodPatch, "/domains/go.example.com", map[string]any{"expired_redirect": "https://go.example.net/gone", "root_redirect": nil})
	mustStatus(t, p, http.StatusOK)
	if m := p.JSON(t); m["expired_redirect"] != "https://go.example.net/gone" || m["root_redirect"] != nil || m["not_found_redirect"] != "https://go.example.net/404" {
		t.Fatalf("patched domain: %s", p.Body)
	}
	mustVisit(t, h, "go.example.com", "/gone1", http.StatusFound, "https://go.example.net/gone")
	mustVisit(t, h, "go.example.com", "/", http.StatusOK, "")
	mustProblem(t, h.api(t, http.MethodPatch, "/domains/hop.test", map[string]any{"root_redirect": nil}), http.StatusConflict)
	mustProblem(t, h.api(t, http.MethodPatch, "/domains/go.example.com", map[string]any{"host": "x.example"}), http.StatusBadRequest)
	mustProblem(t, h.api(t, http.MethodPatch, "/domains/go.example.com", map[string]any{"root_redirect": "ftp://x"}), http.StatusBadRequest)
}

// A deleted slug stays reserved on its own domain only, and a domain is removed only
// once it has no links; the default domain never is.
func TestDomainDeletedSlugAndDomainRemoval(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	h.addDomain(t, map[string]any{"host": "go.example.com"})
	h.createLink(t, map[string]any{"url": "https://b.example/", "slug": "old1", "domain": "go.example.com"})
	mustStatus(t, h.api(t, http.MethodDelete, "/links/old1?domain=go.example.com", nil), http.StatusNoContent)

	mustVisit(t, h, "go.example.com", "/old1", http.StatusGone, "")
	mustProblem(t, h.api(t, http.MethodPost, "/links", map[string]any{"url": "https://evil.example/", "slug": "old1", "domain": "go.example.com"}), http.StatusConflict)
	h.createLink(t, map[string]any{"url": "https://a.example/", "slug": "old1"}) // the default domain never had it
	mustVisit(t, h, "hop.test", "/old1", http.StatusFound, "https://a.example/")

	h.createLink(t, map[string]any{"url": "https://b.example/live", "slug": "live1", "domain": "go.example.com"})
	p := mustProblem(t, h.api(t, http.MethodDelete, "/domains/go.example.com", nil), http.StatusConflict)
	if !strings.Contains(p["detail"].(string), "1 links") {
		t.Fatalf("409 detail: %v", p["detail"])
	}
	mustProblem(t, h.api(t, http.MethodDelete, "/domains/hop.test", nil), http.StatusConflict)
	mustProblem(t, h.api(t, http.MethodDelete, "/domains/nowhere.example", nil), http.StatusNotFound)
	mustStatus(t, h.api(t, http.MethodDelete, "/links/live1?domain=go.example.com", nil), http.StatusNoContent)
	mustStatus(t, h.api(t, http.MethodDelete, "/domains/go.example.com", nil), http.StatusNoContent)
	mustProblem(t, h.api(t, http.MethodGet, "/domains/go.example.com", nil), http.StatusNotFound)
	// Its Host is now an unregistered one: the default domain answers.
	mustVisit(t, h, "go.example.com", "/old1", http.StatusFound, "https://a.example/")

	// Added again, it has its deleted slugs still reserved: old short URLs cannot be
	// taken over by whoever adds the domain next.
	h.addDomain(t, map[string]any{"host": "go.example.com"})
	mustVisit(t, h, "go.example.com", "/old1", http.StatusGone, "")
	mustProblem(t, h.api(t, http.MethodPost, "/links", map[string]any{"url": "https://evil.example/", "slug": "old1", "domain": "go.example.com"}), http.StatusConflict)
}

// A PATCH through one instance is seen by another that has cached the slug of both
// domains, for the patched domain only.
func TestDomainPatchSeenOnOtherInstance(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	rdb := testenv.NewRedis(t)
	a := startWith(t, db, rdb, testConfig(t, db, rdb))
	b := startWith(t, db, rdb, testConfig(t, db, rdb))
	a.addDomain(t, map[string]any{"host": "go.example.com"})
	a.createLink(t, map[string]any{"url": "https://a.example/v1", "slug": "multi"})
	a.createLink(t, map[string]any{"url": "https://b.example/v1", "slug": "multi", "domain": "go.example.com"})
	// Domain changes reach other instances through Redis, a moment later.
	testenv.Eventually(t, 5*time.Second, "B to know the new domain", func() bool {
		_, loc := b.visit(t, "go.example.com", "/multi")
		return loc == "https://b.example/v1"
	})
	for range 3 { // warm every cache layer of B for both
		mustVisit(t, b, "go.example.com", "/multi", http.StatusFound, "https://b.example/v1")
		mustVisit(t, b, "hop.test", "/multi", http.StatusFound, "https://a.example/v1")
	}
	mustStatus(t, a.api(t, http.MethodPatch, "/links/multi?domain=go.example.com", map[string]any{"url": "https://b.example/v2"}), http.StatusOK)
	testenv.Eventually(t, 5*time.Second, "B to see the patch", func() bool {
		_, loc := b.visit(t, "go.example.com", "/multi")
		return loc == "https://b.example/v2"
	})
	mustVisit(t, b, "hop.test", "/multi", http.StatusFound, "https://a.example/v1")
	mustVisit(t, a, "go.example.com", "/multi", http.StatusFound, "https://b.example/v2")

	// A delete on one domain is seen the same way, and leaves the other alone.
	mustStatus(t, a.api(t, http.MethodDelete, "/links/multi", nil), http.StatusNoContent)
	testenv.Eventually(t, 5*time.Second, "B to see the delete", func() bool {
		code, _ := b.visit(t, "hop.test", "/multi")
		return code == http.StatusGone
	})
	mustVisit(t, b, "go.example.com", "/multi", http.StatusFound, "https://b.example/v2")
}

// X-Forwarded-Host picks the domain only when a trusted proxy sent it.
func TestForwardedHostFromTrustedProxyOnly(t *testing.T) {
	t.Parallel()
	trusting := startHop(t, func(cfg map[string]any) { cfg["trusted_proxies"] = []string{"127.0.0.1/32"} })
	untrusting := startHop(t, func(cfg map[string]any) { cfg["trusted_proxies"] = []string{"10.0.0.0/8"} })
	for _, h := range []*instance{trusting, untrusting} {
		h.addDomain(t, map[string]any{"host": "go.example.com"})
		h.createLink(t, map[string]any{"url": "https://a.example/", "slug": "fwd1"})
		h.createLink(t, map[string]any{"url": "https://b.example/", "slug": "fwd1", "domain": "go.example.com"})
	}
	mustVisit(t, trusting, "hop.test", "/fwd1", http.StatusFound, "https://b.example/", "X-Forwarded-Host", "Go.Example.com:443, hop.test")
	mustVisit(t, trusting, "go.example.com", "/fwd1", http.StatusFound, "https://a.example/", "X-Forwarded-Host", "hop.test")
	mustVisit(t, untrusting, "hop.test", "/fwd1", http.StatusFound, "https://a.example/", "X-Forwarded-Host", "go.example.com")
	mustVisit(t, untrusting, "go.example.com", "/fwd1", http.StatusFound, "https://b.example/", "X-Forwarded-Host", "hop.test")
}

// Stats and exports name a link by domain and slug; /stats?domain= covers one domain.
func TestDomainStats(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	h.addDomain(t, map[string]any{"host": "go.example.com"})
	h.createLink(t, map[string]any{"url": "https://a.example/", "slug": "st1"})
	h.createLink(t, map[string]any{"url": "https://b.example/", "slug": "st1", "domain": "go.example.com"})
	h.createLink(t, map[string]any{"url": "https://b.example/2", "slug": "st2", "domain": "go.example.com"})
	ua := "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"
	for range 2 {
		mustVisit(t, h, "hop.test", "/st1", http.StatusFound, "https://a.example/", "User-Agent", ua)
	}
	for range 3 {
		mustVisit(t, h, "go.example.com", "/st1", http.StatusFound, "https://b.example/", "User-Agent", ua)
	}
	clicks := func(path string) float64 {
		r := h.api(t, http.MethodGet, path, nil)
		mustStatus(t, r, http.StatusOK)
		return r.JSON(t)["total_clicks"].(float64)
	}
	testenv.Eventually(t, 20*time.Second, "the clicks to be aggregated", func() bool {
		return clicks("/links/st1/stats") == 2 && clicks("/links/st1/stats?domain=go.example.com") == 3
	})
	if n := clicks("/stats?domain=go.example.com"); n != 3 {
		t.Fatalf("go.example.com overview: %v clicks, want 3", n)
	}
	if n := clicks("/stats?domain=hop.test"); n != 2 {
		t.Fatalf("hop.test overview: %v clicks, want 2", n)
	}
	if n := clicks("/stats"); n != 5 {
		t.Fatalf("overview: %v clicks, want 5", n)
	}
	if n := h.api(t, http.MethodGet, "/stats?domain=go.example.com", nil).JSON(t)["links"]; n != float64(2) {
		t.Fatalf("go.example.com overview links: %v, want 2", n)
	}
	mustProblem(t, h.api(t, http.MethodGet, "/links/st2/stats", nil), http.StatusNotFound)
	mustProblem(t, h.api(t, http.MethodGet, "/stats?domain=nowhere.example", nil), http.StatusNotFound)
	testenv.Eventually(t, 20*time.Second, "the clicks to be exported", func() bool {
		csv := h.api(t, http.MethodGet, "/links/st1/clicks.csv?domain=go.example.com", nil)
		return csv.Status == http.StatusOK && strings.Count(string(csv.Body), "\n") == 4 // header + 3
	})
}

// hop domain add|list|remove work on the database directly.
func TestDomainCLI(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	rdb := testenv.NewRedis(t)
	cfg := testConfig(t, db, rdb)
	path := writeConfig(t, cfg)
	run := func(args ...string) (string, error) {
		var out, logs bytes.Buffer
		err := Run(context.Background(), append([]string{"--config", path}, args...), func(string) string { return "" }, &out, &logs)
		return out.String(), err
	}
	if out, err := run("domain", "add", "Go.Example.com", "--base-url", "https://go.example.com:8443"); err != nil || !strings.Contains(out, "added domain go.example.com") {
		t.Fatalf("add: %q %v", out, err)
	}
	if _, err := run("domain", "add", "go.example.com"); err == nil {
		t.Fatal("adding a domain twice succeeded")
	}
	out, err := run("domain", "list")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "hop.test ") || !strings.Contains(lines[1], "yes") ||
		!strings.Contains(lines[2], "go.example.com") || !strings.Contains(lines[2], "https://go.example.com:8443") {
		t.Fatalf("list:\n%s", out)
	}
	if _, err := run("domain", "remove", "hop.test"); err == nil {
		t.Fatal("removing the default domain succeeded")
	}
	if out, err := run("domain", "remove", "go.example.com"); err != nil || !strings.Contains(out, "removed") {
		t.Fatalf("remove: %q %v", out, err)
	}
	if out, _ := run("domain", "list"); strings.Contains(out, "go.example.com") {
		t.Fatalf("removed domain still listed:\n%s", out)
	}
}

// The default domain can be read (and is refused changes) by the host HOP_BASE_URL
// names, even an IP address, which no branded domain may be.
func TestDefaultDomainOnAnIPAddress(t *testing.T) {
	t.Parallel()
	h := startHop(t, func(cfg map[string]any) { cfg["base_url"] = "http://127.0.0.1:8080" })
	r := h.api(t, http.MethodGet, "/domains/127.0.0.1", nil)
	mustStatus(t, r, http.StatusOK)
	if d := r.JSON(t); d["host"] != "127.0.0.1" || d["default"] != true {
		t.Fatalf("GET /domains/127.0.0.1: %s", r.Body)
	}
	mustProblem(t, h.api(t, http.MethodPatch, "/domains/127.0.0.1", map[string]any{"root_redirect": "https://example.com/"}), http.StatusConflict)
	mustProblem(t, h.api(t, http.MethodDelete, "/domains/127.0.0.1", nil), http.StatusConflict)
	mustProblem(t, h.api(t, http.MethodGet, "/domains/127.0.0.2", nil), http.StatusBadRequest)
	mustProblem(t, h.api(t, http.MethodPost, "/domains", map[string]any{"host": "127.0.0.1"}), http.StatusBadRequest)

	// An IPv6 base URL is stored as a Host header names it, brackets and all.
	h6 := startHop(t, func(cfg map[string]any) { cfg["base_url"] = "http://[::1]:8080" })
	r = h6.api(t, http.MethodGet, "/domains", nil)
	mustStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.Body), `"host":"[::1]"`) {
		t.Fatalf("GET /domains with base URL http://[::1]:8080: %s", r.Body)
	}
	r = h6.api(t, http.MethodGet, "/domains/[::1]", nil)
	mustStatus(t, r, http.StatusOK)
	if d := r.JSON(t); d["host"] != "[::1]" || d["default"] != true {
		t.Fatalf("GET /domains/[::1]: %s", r.Body)
	}
}
