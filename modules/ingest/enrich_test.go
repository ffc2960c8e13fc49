package ingest

import (
	"bytes"
	"crypto/sha256"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

const (
	uaChromeWin    = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
	uaEdge         = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0"
	uaFirefoxMac   = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7; rv:121.0) Gecko/20100101 Firefox/121.0"
	uaIPhone       = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
	uaIPad         = "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
	uaAndroidPhone = "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36"
	uaAndroidTab   = "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
	uaCubot        = "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36"
)

func TestClassifyUA(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, ua                       string
		browser, os, device, botReason string
	}{
		{"chrome windows", uaChromeWin, "Chrome", "Windows", deviceDesktop, ""},
		{"edge", uaEdge, "Edge", "Windows", deviceDesktop, ""},
		{"firefox mac", uaFirefoxMac, "Firefox", "macOS", deviceDesktop, ""},
		{"iphone", uaIPhone, "Safari", "iOS", deviceMobile, ""},
		{"ipad", uaIPad, "Safari", "iOS", deviceTablet, ""},
		{"android phone", uaAndroidPhone, "Chrome", "Android", deviceMobile, ""},
		{"android tablet without Mobile", uaAndroidTab, "Chrome", "Android", deviceTablet, ""},
		{"phone brand containing bot", uaCubot, "Chrome", "Android", deviceMobile, ""},
		{"empty", "", "", "", deviceBot, botEmpty},
		{"blank", "   ", "", "", deviceBot, botEmpty},
		{"googlebot", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Googlebot", "", deviceBot, botSearch},
		{"bingbot", "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36", "Bingbot", "", deviceBot, botSearch},
		{"applebot", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)", "Applebot", "", deviceBot, botSearch},
		{"slackbot", "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "Slackbot", "", deviceBot, botUnfurler},
		{"twitterbot", "Twitterbot/1.0", "Twitterbot", "", deviceBot, botUnfurler},
		{"facebook", "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", "facebookexternalhit", "", deviceBot, botUnfurler},
		{"discord", "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)", "Discordbot", "", deviceBot, botUnfurler},
		{"whatsapp", "WhatsApp/2.23.20.0 A", "WhatsApp", "", deviceBot, botUnfurler},
		{"telegram", "TelegramBot (like TwitterBot)", "TelegramBot", "", deviceBot, botUnfurler},
		{"linkedin", "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)", "LinkedInBot", "", deviceBot, botUnfurler},
		{"mastodon over http.rb", "http.rb/5.1.1 (Mastodon/4.2.0; +https://mastodon.social/)", "Mastodon", "", deviceBot, botUnfurler},
		{"gptbot", "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; GPTBot/1.2; +https://openai.com/gptbot", "GPTBot", "", deviceBot, botAI},
		{"claudebot", "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)", "ClaudeBot", "", deviceBot, botAI},
		{"ccbot", "CCBot/2.0 (https://commoncrawl.org/faq/)", "CCBot", "", deviceBot, botAI},
		{"perplexity", "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; PerplexityBot/1.0; +https://perplexity.ai/perplexitybot)", "PerplexityBot", "", deviceBot, botAI},
		{"applebot-extended before applebot", "Applebot-Extended/0.1", "Applebot-Extended", "", deviceBot, botAI},
		{"curl", "curl/8.4.0", "curl", "", deviceBot, botHTTPClient},
		{"wget", "Wget/1.21.4", "Wget", "", deviceBot, botHTTPClient},
		{"python-requests", "python-requests/2.31.0", "python-requests", "", deviceBot, botHTTPClient},
		{"go", "Go-http-client/1.1", "Go-http-client", "", deviceBot, botHTTPClient},
		{"okhttp", "okhttp/4.12.0", "okhttp", "", deviceBot, botHTTPClient},
		{"headless chrome", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36", "HeadlessChrome", "", deviceBot, botHeadless},
		{"generic spider", "Mozilla/5.0 (compatible; ExampleSpider/1.0)", "ExampleSpider", "", deviceBot, botCrawler},
		{"generic robot url", "SomeFetcher/1.0 (+https://example.com/robot.html)", "SomeFetcher", "", deviceBot, botCrawler},
		{"samsung internet", "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36", "Samsung Browser", "Android", deviceMobile, ""},
		{"opera", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 OPR/106.0.0.0", "Opera", "Windows", deviceDesktop, ""},
		{"chrome on iphone", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1", "Chrome", "iOS", deviceMobile, ""},
		{"firefox on android", "Mozilla/5.0 (Android 14; Mobile; rv:121.0) Gecko/121.0 Firefox/121.0", "Firefox", "Android", deviceMobile, ""},
		{"chromebook", "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", "Chrome", "ChromeOS", deviceDesktop, ""},
		{"android tv", "Mozilla/5.0 (Linux; Android 9; SHIELD Android TV) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", "Chrome", "Android", deviceOther, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := classifyUA(tt.ua)
			want := uaInfo{browser: tt.browser, os: tt.os, device: tt.device, botReason: tt.botReason}
			if got != want {
				t.Errorf("classifyUA(%q) = %+v, want %+v", tt.ua, got, want)
			}
		})
	}
}

func TestAnonymizeIP(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, anon, full string }{
		{"203.0.113.77", "203.0.113.0", "203.0.113.77"},
		{" 8.8.4.4 ", "8.8.4.0", "8.8.4.4"},
		{"::ffff:198.51.100.9", "198.51.100.0", "198.51.100.9"},
		{"2001:db8:abcd:12:1:2:3:4", "2001:db8:abcd::", "2001:db8:abcd:12:1:2:3:4"},
		{"fe80::1%eth0", "fe80::", "fe80::1"},
		{"198.51.100.9:4711", "198.51.100.0", "198.51.100.9"},
		{"[2001:db8::1]:443", "2001:db8::", "2001:db8::1"},
		{"", "", ""},
		{"not an ip", "", ""},
		{"999.1.1.1", "", ""},
	}
	for _, tt := range tests {
		anon, addr := anonymizeIP(tt.in)
		full := ""
		if addr.IsValid() {
			full = addr.String()
		}
		if anon != tt.anon || full != tt.full {
			t.Errorf("anonymizeIP(%q) = %q, %q; want %q, %q", tt.in, anon, full, tt.anon, tt.full)
		}
	}
}

func TestCountryFor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		given, ip, want string
	}{
		{"", "8.8.8.8", "US"},
		{"", "81.2.69.142", "GB"},
		{"", "2001:4860:4860::8888", "US"},
		{"", "10.0.0.1", ""},  // private: unknown
		{"", "127.0.0.1", ""}, // loopback: unknown
		{"", "", ""},
		{"de", "8.8.8.8", "DE"},  // trusted proxy header wins, normalised
		{"XX", "8.8.8.8", "US"},  // Cloudflare's "unknown" falls back to lookup
		{"T1", "8.8.8.8", "US"},  // Tor marker is not a country
		{"USA", "8.8.8.8", "US"}, // not alpha-2
	}
	for _, tt := range tests {
		_, addr := anonymizeIP(tt.ip)
		if got := countryFor(tt.given, addr, iplocCountry); got != tt.want {
			t.Errorf("countryFor(%q, %q) = %q, want %q", tt.given, tt.ip, got, tt.want)
		}
	}
}

func TestRefererHost(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", directHost},
		{"   ", directHost},
		{"https://www.Google.com/search?q=x", "www.google.com"},
		{"https://news.ycombinator.com/item?id=1", "news.ycombinator.com"},
		{"http://Example.COM:8080/path", "example.com"},
		{"https://user:pass@example.org/", "example.org"},
		{"https://example.org./", "example.org"},
		{"https://[2001:db8::1]:443/x", "2001:db8::1"},
		{"android-app://com.google.android.gm/", "com.google.android.gm"},
		{"example.com/no-scheme", directHost},
		{"/relative/path", directHost},
		{"::not a url::", directHost},
		{"https://%zz/", directHost},
		{"https://bücher.example/", "bücher.example"},
		{"https://" + strings.Repeat("a", 300) + ".com/", directHost},
		{"https://example.com/a?q=%zz", "example.com"},
		{"https://example.com/%zz", directHost},
		{"https://example.com/a#%zz", directHost},
		{"https://example.com/a#b?c=%zz", directHost},
		{"https://example.com/a\x7f", directHost},
		{"https://example.com?q=1", "example.com"},
		{"http://sub-1.example.com#top", "sub-1.example.com"},
	}
	for _, tt := range tests {
		if got := refererHost(tt.in); got != tt.want {
			t.Errorf("refererHost(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSanitize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"plain", 10, "plain"},
		{"a\x00b", 10, "ab"},
		{"a\xffb", 10, "a\uFFFDb"},
		{"abcdef", 3, "abc"},
		{"aé", 2, "a"}, // never split a rune
		{strings.Repeat("x", 2000), 1024, strings.Repeat("x", 1024)},
	}
	for _, tt := range tests {
		if got := sanitize(tt.in, tt.max); got != tt.want {
			t.Errorf("sanitize(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}

func TestVisitorHash(t *testing.T) {
	t.Parallel()
	salt1 := bytes.Repeat([]byte{1}, 32)
	salt2 := bytes.Repeat([]byte{2}, 32)
	a := visitorHash(salt1, 7, "203.0.113.77", uaChromeWin)
	if len(a) != visitorBytes {
		t.Fatalf("hash length %d, want %d", len(a), visitorBytes)
	}
	if !bytes.Equal(a, visitorHash(salt1, 7, "203.0.113.77", uaChromeWin)) {
		t.Error("same visitor, same day: hashes differ")
	}
	for name, other := range map[string][]byte{
		"other day":  visitorHash(salt2, 7, "203.0.113.77", uaChromeWin),
		"other link": visitorHash(salt1, 8, "203.0.113.77", uaChromeWin),
		"other ip":   visitorHash(salt1, 7, "203.0.113.78", uaChromeWin),
		"other ua":   visitorHash(salt1, 7, "203.0.113.77", uaFirefoxMac),
		"separator":  visitorHash(salt1, 7, "203.0.113.77|x", "y"),
	} {
		if bytes.Equal(a, other) {
			t.Errorf("%s: hash equal", name)
		}
	}
}

func TestRowEnrichment(t *testing.T) {
	t.Parallel()
	e := &Enricher{country: iplocCountry}
	id := uuid.Must(uuid.NewV7())
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	salt := bytes.Repeat([]byte{9}, 32)
	r := e.row(&Event{ID: id, LinkID: 42, Time: now, IP: "8.8.8.8", UserAgent: "  " + uaIPhone + "\x00", Referer: "https://t.co/abc",
		UTMSource: "news", UTMCampaign: strings.Repeat("x", 200) + "\x00"}, salt, &visitorHasher{}, make([]byte, 0, 32))
	want := clickRow{
		eventID: id, linkID: 42, clickedAt: now, ip: "8.8.8.0", country: "US",
		referer: "https://t.co/abc", refererHost: "t.co", userAgent: uaIPhone,
		browser: "Safari", os: "iOS", device: deviceMobile,
		visitorHash: visitorHash(salt, 42, "8.8.8.8", uaIPhone),
		utmSource:   "news", utmCampaign: strings.Repeat("x", maxUTM), // bounded again: the stream is not trusted
	}
	if !bytes.Equal(r.visitorHash, want.visitorHash) {
		t.Errorf("visitor hash %x, want %x", r.visitorHash, want.visitorHash)
	}
	r.visitorHash, want.visitorHash = nil, nil
	if !reflect.DeepEqual(r, want) {
		t.Errorf("row = %+v\nwant  %+v", r, want)
	}
}

func TestCodecRoundTrip(t *testing.T) {
	t.Parallel()
	ev := Event{
		ID: uuid.Must(uuid.NewV7()), LinkID: -3, Time: time.Date(2025, 1, 2, 3, 4, 5, 123456000, time.UTC),
		IP: "2001:db8::1", Country: "NL", UserAgent: uaEdge, Referer: "https://example.com/ü", AcceptLanguage: "nl-NL,nl;q=0.9",
	}
	b := appendEvent(nil, &ev)
	got, err := decodeEvent(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if got != ev {
		t.Errorf("round trip = %+v, want %+v", got, ev)
	}
	for _, bad := range []string{"", "\x02" + strings.Repeat("x", 30), string(b[:len(b)-1]), string(b) + "x"} {
		if _, err := decodeEvent(bad); err == nil {
			t.Errorf("decodeEvent(%q) accepted garbage", bad)
		}
	}
}

// checkStored fails when s could not be stored in click_logs as is.
func checkStored(t *testing.T, what, s string, max int) {
	t.Helper()
	if len(s) > max || !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		t.Fatalf("%s not storable: %q", what, s)
	}
}

func FuzzRefererHost(f *testing.F) {
	for _, s := range []string{"", "https://www.example.com/x", "http://[::1]:80/", "android-app://x/", "https://%41/", "\xff", "https://a\x00b/",
		"https://t.co/x?q=%41#f", "http://a.b/c%2Fd", "https://example.com#x?y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h := refererHost(s)
		if fast, ok := plainRefererHost(s); ok {
			if slow := parsedRefererHost(s); fast != slow {
				t.Fatalf("fast path gives %q for %q, url.Parse %q", fast, s, slow)
			}
		}
		checkStored(t, "host", h, maxHost)
		if h != directHost && h != strings.ToLower(h) {
			t.Fatalf("host %q not lower-case", h)
		}
		checkStored(t, "referer", sanitize(s, maxReferer), maxReferer)
	})
}

func FuzzUserAgent(f *testing.F) {
	for _, s := range []string{"", uaChromeWin, uaIPad, "curl/8", "Googlebot", "\xff\xfe", strings.Repeat("Mozilla ", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ua := sanitize(s, maxUserAgent)
		checkStored(t, "user agent", ua, maxUserAgent)
		info := classifyUA(ua)
		for _, v := range []string{info.browser, info.os, info.device, info.botReason} {
			checkStored(t, "classification", v, 64)
		}
		switch info.device {
		case deviceDesktop, deviceMobile, deviceTablet, deviceOther:
			if info.botReason != "" {
				t.Fatalf("human device %q with bot reason %q", info.device, info.botReason)
			}
		case deviceBot:
			if info.botReason == "" {
				t.Fatal("bot device without reason")
			}
		default:
			t.Fatalf("unknown device %q", info.device)
		}
	})
}

func FuzzAnonymizeIP(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "::1", "2001:db8::1", "fe80::1%eth0", "[::1]:80", "", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		anon, addr := anonymizeIP(s)
		checkStored(t, "ip", anon, 64)
		if anon == "" {
			return
		}
		a, err := netip.ParseAddr(anon)
		if err != nil {
			t.Fatalf("anonymised %q is not an address", anon)
		}
		bits := 48
		if a.Is4() {
			bits = 24
		}
		if p, _ := addr.Prefix(bits); p.Addr() != a {
			t.Fatalf("anonymised %q is not the /%d of %s", anon, bits, addr)
		}
		_ = countryFor("", addr, iplocCountry)
	})
}

func FuzzDecodeEvent(f *testing.F) {
	ev := Event{ID: uuid.Must(uuid.NewV7()), LinkID: 1, Time: time.Unix(1700000000, 0), IP: "1.2.3.4", UserAgent: "ua"}
	f.Add(string(appendEvent(nil, &ev)))
	f.Add("")
	f.Add("\x01")
	f.Fuzz(func(t *testing.T, s string) {
		ev, err := decodeEvent(s)
		if err != nil {
			return
		}
		again, err := decodeEvent(string(appendEvent(nil, &ev)))
		if err != nil || again != ev {
			t.Fatalf("re-encoding %+v failed: %+v, %v", ev, again, err)
		}
	})
}

// One hasher reused across a batch, salts switching between days, gives exactly the
// hashes computed one by one.
func TestVisitorHasherReuse(t *testing.T) {
	t.Parallel()
	salts := [][]byte{bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)}
	var h visitorHasher
	buf := make([]byte, 0, 10*32)
	var got [][]byte
	for i := range 10 {
		got = append(got, h.sum(buf[len(buf):], salts[i%3%2], int64(i), "198.51.100.1", "ua"))
		buf = buf[:len(buf)+32]
	}
	for i := range 10 {
		if want := visitorHash(salts[i%3%2], int64(i), "198.51.100.1", "ua"); !bytes.Equal(got[i], want) {
			t.Fatalf("hash %d differs when the hasher is reused", i)
		}
	}
}

// BenchmarkRowCPU is the consumer's own work per click without any I/O: enrich an
// event and encode its row the way pgx.CopyFrom does, value by value.
func BenchmarkRowCPU(b *testing.B) {
	e := &Enricher{country: iplocCountry}
	m := pgtype.NewMap()
	oids := []uint32{pgtype.UUIDOID, pgtype.Int8OID, pgtype.TimestamptzOID,
		pgtype.TextOID, pgtype.TextOID, pgtype.TextOID, pgtype.TextOID, pgtype.TextOID, pgtype.TextOID,
		pgtype.TextOID, pgtype.TextOID, pgtype.BoolOID, pgtype.TextOID, pgtype.ByteaOID,
		pgtype.TextOID, pgtype.TextOID, pgtype.TextOID}
	if len(oids) != len(clickColumns) {
		b.Fatalf("%d OIDs for %d click_logs columns: give the new column its type here", len(oids), len(clickColumns))
	}
	uas := []string{uaChromeWin, uaIPhone, uaAndroidPhone, uaFirefoxMac, "curl/8.4.0"}
	refs := []string{"https://news.ycombinator.com/item?id=4242", "https://www.google.com/", "https://t.co/abc", ""}
	evs := make([]Event, 100)
	for i := range evs {
		evs[i] = Event{ID: uuid.Must(uuid.NewV7()), LinkID: int64(1000 + i), Time: time.Now(),
			IP: "203.0.113." + strconv.Itoa(i), UserAgent: uas[i%len(uas)], Referer: refs[i%len(refs)],
			AcceptLanguage: "en-US,en;q=0.9"}
	}
	salt := bytes.Repeat([]byte{7}, 32)
	var hasher visitorHasher
	hash := make([]byte, 0, sha256.Size)
	src := &rowSource{rows: make([]clickRow, 1)}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		src.rows[0] = e.row(&evs[i%len(evs)], salt, &hasher, hash)
		src.i = 0
		src.Next()
		vals, _ := src.Values()
		buf = buf[:0]
		for j, v := range vals {
			var err error
			if buf, err = m.Encode(oids[j], pgtype.BinaryFormatCode, v, buf); err != nil {
				b.Fatal(err)
			}
		}
	}
}
