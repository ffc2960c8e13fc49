package ingest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/mileusna/useragent"
	"github.com/oschwald/geoip2-golang/v2"
	"github.com/phuslu/iploc"
)

// Bounds on what one click may store; PostgreSQL rejects invalid UTF-8 and NUL bytes,
// so every untrusted string is sanitised before it reaches a COPY.
const (
	maxReferer   = 1024
	maxUTM       = 128 // the redirect bounds campaign parameters the same way
	maxUserAgent = 512
	maxHost      = 253
	directHost   = "(direct)"
	visitorBytes = 16
)

// Device classes stored in click_logs.device.
const (
	deviceDesktop = "desktop"
	deviceMobile  = "mobile"
	deviceTablet  = "tablet"
	deviceBot     = "bot"
	deviceOther   = "other"
)

// clickRow is one enriched click, in click_logs column order.
type clickRow struct {
	eventID     uuid.UUID
	linkID      int64
	clickedAt   time.Time
	ip          string
	country     string
	referer     string
	refererHost string
	userAgent   string
	browser     string
	os          string
	device      string
	isBot       bool
	botReason   string
	visitorHash []byte
	// Campaign parameters; "" is stored as NULL.
	utmSource, utmMedium, utmCampaign string
}

// Enricher turns raw events into rows. It runs at ingest, never on the redirect path;
// build one per process (it holds the GeoIP database) and share it.
type Enricher struct {
	country func(netip.Addr) string
	salts   *Salts
	close   func() error

	// Most clicks come from a few thousand distinct user agents, and classifying one
	// costs a dozen substring scans plus a parse: remember the answers, boundedly
	// (when full, the cache starts over).
	uaMu    sync.Mutex
	uaCache map[string]uaInfo
}

const uaCacheMax = 8192

// classify is classifyUA through the cache.
func (e *Enricher) classify(ua string) uaInfo {
	e.uaMu.Lock()
	info, ok := e.uaCache[ua]
	e.uaMu.Unlock()
	if ok {
		return info
	}
	info = classifyUA(ua)
	e.uaMu.Lock()
	if e.uaCache == nil || len(e.uaCache) >= uaCacheMax {
		e.uaCache = make(map[string]uaInfo, 256)
	}
	e.uaCache[strings.Clone(ua)] = info
	e.uaMu.Unlock()
	return info
}

// NewEnricher uses the embedded iploc data, or the .mmdb at geoDB when set, and the
// visitor salts of salts. Close releases the database.
func NewEnricher(geoDB string, salts *Salts) (*Enricher, error) {
	if salts == nil {
		return nil, errors.New("ingest enricher: nil salt store")
	}
	e := &Enricher{country: iplocCountry, salts: salts, close: func() error { return nil }}
	if geoDB == "" {
		return e, nil
	}
	r, err := geoip2.Open(geoDB)
	if err != nil {
		return nil, fmt.Errorf("open GeoIP database %s: %w", geoDB, err)
	}
	e.country = func(a netip.Addr) string {
		c, err := r.Country(a)
		if err != nil || c == nil {
			return ""
		}
		return cmpString(c.Country.ISOCode, c.RegisteredCountry.ISOCode)
	}
	e.close = r.Close
	return e, nil
}

// Close releases the GeoIP database, once no writer uses the enricher any more.
func (e *Enricher) Close() error { return e.close() }

func cmpString(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func iplocCountry(a netip.Addr) string {
	c := iploc.IPCountry(a)
	if c == "ZZ" { // iploc's "unknown" (private, reserved)
		return ""
	}
	return c
}

// rowBuf holds a batch's rows and the visitor hashes they point into, so a writer
// can reuse both for its next batch.
type rowBuf struct {
	rows   []clickRow
	hashes []byte
}

// enrich builds one row per event into buf, growing it as needed. It fails only when
// a visitor salt cannot be read.
func (e *Enricher) enrich(ctx context.Context, events []Event, buf *rowBuf) ([]clickRow, error) {
	if cap(buf.rows) < len(events) {
		buf.rows = make([]clickRow, len(events))
	}
	if cap(buf.hashes) < len(events)*sha256.Size {
		buf.hashes = make([]byte, 0, len(events)*sha256.Size) // one allocation for every hash of the batch
	}
	rows, hashes := buf.rows[:len(events)], buf.hashes[:0]
	var hasher visitorHasher
	for i := range events {
		ev := &events[i]
		salt, err := e.salts.forDay(ctx, ev.Time)
		if err != nil {
			return nil, err
		}
		rows[i] = e.row(ev, salt, &hasher, hashes[len(hashes):])
		hashes = hashes[:len(hashes)+sha256.Size]
	}
	return rows, nil
}

// row enriches one event; its visitor hash is written into hashBuf (capacity at least
// sha256.Size).
func (e *Enricher) row(ev *Event, salt []byte, hasher *visitorHasher, hashBuf []byte) clickRow {
	anon, addr := anonymizeIP(ev.IP)
	ua := sanitize(strings.TrimSpace(ev.UserAgent), maxUserAgent)
	info := e.classify(ua)
	ipKey := ev.IP
	if addr.IsValid() {
		ipKey = addr.String()
	}
	return clickRow{
		eventID:     ev.ID,
		linkID:      ev.LinkID,
		clickedAt:   ev.Time,
		ip:          anon,
		country:     countryFor(ev.Country, addr, e.country),
		referer:     sanitize(strings.TrimSpace(ev.Referer), maxReferer),
		refererHost: refererHost(ev.Referer),
		userAgent:   ua,
		browser:     info.browser,
		os:          info.os,
		device:      info.device,
		isBot:       info.botReason != "",
		botReason:   info.botReason,
		visitorHash: hasher.sum(hashBuf[:0], salt, ev.LinkID, ipKey, ua),
		utmSource:   sanitize(ev.UTMSource, maxUTM),
		utmMedium:   sanitize(ev.UTMMedium, maxUTM),
		utmCampaign: sanitize(ev.UTMCampaign, maxUTM),
	}
}

// sanitize makes s storable: valid UTF-8, no NUL bytes, at most max bytes.
func sanitize(s string, max int) string {
	if len(s) <= max && utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "")
	return truncateUTF8(s, max)
}

// anonymizeIP parses a client IP and returns its network in text form (IPv4 /24,
// IPv6 /48) together with the parsed full address. Unparseable input gives "".
func anonymizeIP(raw string) (string, netip.Addr) {
	raw = strings.TrimSpace(raw)
	addr, err := netip.ParseAddr(raw)
	if err != nil {
		ap, err := netip.ParseAddrPort(raw)
		if err != nil {
			return "", netip.Addr{}
		}
		addr = ap.Addr()
	}
	addr = addr.WithZone("").Unmap()
	bits := 48
	if addr.Is4() {
		bits = 24
	}
	p, err := addr.Prefix(bits)
	if err != nil {
		return "", netip.Addr{}
	}
	return p.Addr().String(), addr
}

// countryFor prefers the country the redirect took from a trusted proxy header, then
// the IP lookup. Only ISO 3166-1 alpha-2 shapes are kept.
func countryFor(given string, addr netip.Addr, lookup func(netip.Addr) string) string {
	if c, ok := isoCountry(given); ok {
		return c
	}
	if !addr.IsValid() || lookup == nil {
		return ""
	}
	c, _ := isoCountry(lookup(addr))
	return c
}

func isoCountry(s string) (string, bool) {
	if len(s) != 2 {
		return "", false
	}
	b := [2]byte{s[0] &^ 0x20, s[1] &^ 0x20} // ASCII upper-case
	if b[0] < 'A' || b[0] > 'Z' || b[1] < 'A' || b[1] > 'Z' {
		return "", false
	}
	c := string(b[:])
	if c == "XX" || c == "ZZ" { // "unknown" in Cloudflare's and iploc's data
		return "", false
	}
	return c, true
}

// refererHost is the lower-cased host of a referer ("www." kept as sent), or
// "(direct)" when there is none or it cannot be parsed.
func refererHost(ref string) string {
	ref = strings.TrimSpace(ref)
	if ref == "" || len(ref) > 8192 {
		return directHost
	}
	if h, ok := plainRefererHost(ref); ok {
		return h
	}
	return parsedRefererHost(ref)
}

// parsedRefererHost is refererHost for any referer, through url.Parse.
func parsedRefererHost(ref string) string {
	u, err := url.Parse(ref)
	if err != nil || u.Host == "" {
		return directHost
	}
	h := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if h == "" || len(h) > maxHost || !utf8.ValidString(h) {
		return directHost
	}
	for _, r := range h {
		if r <= ' ' || r == 0x7f || r == utf8.RuneError {
			return directHost
		}
	}
	return h
}

// plainRefererHost is refererHost's fast path for the common shape, an http(s) URL
// whose host is lower-case letters, digits, dots and hyphens with no port or user: it
// returns that host without parsing the whole URL or allocating. ok is false for
// anything else, and for what url.Parse would reject after the host (control bytes,
// a "%" outside the query), so both paths give the same answer.
func plainRefererHost(ref string) (host string, ok bool) {
	rest, found := strings.CutPrefix(ref, "https://")
	if !found {
		if rest, found = strings.CutPrefix(ref, "http://"); !found {
			return "", false
		}
	}
	end := len(rest)
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if c == '/' || c == '?' || c == '#' {
			end = i
			break
		}
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
			return "", false
		}
	}
	host = rest[:end]
	if host == "" || len(host) > maxHost || host[len(host)-1] == '.' {
		return "", false
	}
	// url.Parse unescapes the path and the fragment, not the query, and refuses
	// control bytes anywhere.
	inQuery, inFragment := false, false
	for i := end; i < len(rest); i++ {
		switch c := rest[i]; {
		case c < ' ' || c == 0x7f:
			return "", false
		case c == '#':
			inQuery, inFragment = false, true
		case c == '?' && !inFragment:
			inQuery = true
		case c == '%' && !inQuery:
			return "", false
		}
	}
	return host, true
}

// visitorHash is HMAC-SHA256(day salt, link|ip|ua) truncated: countable per day,
// irreversible once the salt is deleted.
func visitorHash(salt []byte, linkID int64, ip, ua string) []byte {
	var h visitorHasher
	return h.sum(nil, salt, linkID, ip, ua)
}

// visitorHasher computes visitor hashes for a batch, reusing one HMAC per salt and
// one input buffer: a batch's clicks mostly share a day, so hashing allocates nothing
// per click but the result.
type visitorHasher struct {
	salt []byte
	mac  hash.Hash
	buf  []byte
}

// sum appends the hash to dst and returns the visitorBytes-long result, which shares
// dst's memory.
func (h *visitorHasher) sum(dst []byte, salt []byte, linkID int64, ip, ua string) []byte {
	if h.mac == nil || !bytes.Equal(h.salt, salt) {
		h.mac, h.salt = hmac.New(sha256.New, salt), salt
	}
	h.mac.Reset()
	h.buf = strconv.AppendInt(h.buf[:0], linkID, 10)
	h.buf = append(h.buf, '|')
	h.buf = append(h.buf, ip...)
	h.buf = append(h.buf, '|')
	h.buf = append(h.buf, ua...)
	h.mac.Write(h.buf)
	n := len(dst)
	return h.mac.Sum(dst)[n : n+visitorBytes : n+visitorBytes]
}

// uaInfo is what a user agent says about the client.
type uaInfo struct {
	browser   string
	os        string
	device    string
	botReason string // "" for humans
}

// Bot reasons stored in click_logs.bot_reason.
const (
	botEmpty      = "empty"
	botSearch     = "search"
	botUnfurler   = "unfurler"
	botAI         = "ai"
	botHTTPClient = "http-client"
	botHeadless   = "headless"
	botMonitor    = "monitor"
	botCrawler    = "crawler"
)

// botRule matches a lower-case substring of the user agent. Order matters: more
// specific needles come first (applebot-extended before applebot, telegrambot before
// twitterbot, which Telegram names, mastodon before http.rb).
type botRule struct {
	needle, name, reason string
}

// botRules is immutable.
var botRules = [...]botRule{
	// AI crawlers and assistants.
	{"gptbot", "GPTBot", botAI},
	{"chatgpt-user", "ChatGPT-User", botAI},
	{"oai-searchbot", "OAI-SearchBot", botAI},
	{"claudebot", "ClaudeBot", botAI},
	{"claude-user", "Claude-User", botAI},
	{"claude-searchbot", "Claude-SearchBot", botAI},
	{"claude-web", "Claude-Web", botAI},
	{"anthropic-ai", "anthropic-ai", botAI},
	{"ccbot", "CCBot", botAI},
	{"perplexitybot", "PerplexityBot", botAI},
	{"perplexity-user", "Perplexity-User", botAI},
	{"google-extended", "Google-Extended", botAI},
	{"applebot-extended", "Applebot-Extended", botAI},
	{"meta-externalagent", "Meta-ExternalAgent", botAI},
	{"meta-externalfetcher", "Meta-ExternalFetcher", botAI},
	{"bytespider", "Bytespider", botAI},
	{"amazonbot", "Amazonbot", botAI},
	{"cohere-ai", "cohere-ai", botAI},
	{"diffbot", "Diffbot", botAI},
	{"youbot", "YouBot", botAI},
	{"ai2bot", "AI2Bot", botAI},
	{"mistralai-user", "MistralAI-User", botAI},
	{"timpibot", "Timpibot", botAI},
	{"imagesiftbot", "ImagesiftBot", botAI},
	// Link unfurlers: chat apps and social networks fetching a preview.
	{"slackbot", "Slackbot", botUnfurler},
	{"slack-imgproxy", "Slackbot", botUnfurler},
	{"telegrambot", "TelegramBot", botUnfurler},
	{"twitterbot", "Twitterbot", botUnfurler},
	{"facebookexternalhit", "facebookexternalhit", botUnfurler},
	{"facebookcatalog", "facebookexternalhit", botUnfurler},
	{"discordbot", "Discordbot", botUnfurler},
	{"whatsapp", "WhatsApp", botUnfurler},
	{"linkedinbot", "LinkedInBot", botUnfurler},
	{"mastodon", "Mastodon", botUnfurler},
	{"pleroma", "Pleroma", botUnfurler},
	{"misskey", "Misskey", botUnfurler},
	{"skypeuripreview", "SkypeUriPreview", botUnfurler},
	{"microsoftpreview", "MicrosoftPreview", botUnfurler},
	{"redditbot", "redditbot", botUnfurler},
	{"pinterestbot", "Pinterestbot", botUnfurler},
	{"embedly", "Embedly", botUnfurler},
	{"iframely", "Iframely", botUnfurler},
	{"vkshare", "vkShare", botUnfurler},
	{"viber", "Viber", botUnfurler},
	{"snapchat", "Snapchat", botUnfurler},
	{"bitlybot", "bitlybot", botUnfurler},
	{"google-pagerenderer", "Google-PageRenderer", botUnfurler},
	// Search engines.
	{"googlebot", "Googlebot", botSearch},
	{"google-inspectiontool", "Googlebot", botSearch},
	{"adsbot-google", "AdsBot-Google", botSearch},
	{"mediapartners-google", "Mediapartners-Google", botSearch},
	{"storebot-google", "Storebot-Google", botSearch},
	{"feedfetcher-google", "Feedfetcher-Google", botSearch},
	{"bingbot", "Bingbot", botSearch},
	{"bingpreview", "Bingbot", botSearch},
	{"adidxbot", "Bingbot", botSearch},
	{"yahoo! slurp", "Yahoo! Slurp", botSearch},
	{"duckduckbot", "DuckDuckBot", botSearch},
	{"duckassistbot", "DuckDuckBot", botSearch},
	{"baiduspider", "Baiduspider", botSearch},
	{"yandexbot", "YandexBot", botSearch},
	{"yandex.com/bots", "YandexBot", botSearch},
	{"sogou", "Sogou", botSearch},
	{"applebot", "Applebot", botSearch},
	{"seznambot", "SeznamBot", botSearch},
	{"petalbot", "PetalBot", botSearch},
	{"qwantbot", "Qwantbot", botSearch},
	{"qwantify", "Qwantbot", botSearch},
	{"mojeekbot", "MojeekBot", botSearch},
	{"exabot", "Exabot", botSearch},
	{"naver.me/spd", "Yeti", botSearch},
	// Uptime and synthetic monitoring.
	{"uptimerobot", "UptimeRobot", botMonitor},
	{"pingdom", "Pingdom", botMonitor},
	{"statuscake", "StatusCake", botMonitor},
	{"site24x7", "Site24x7", botMonitor},
	{"datadogsynthetics", "Datadog", botMonitor},
	{"checkly", "Checkly", botMonitor},
	{"betteruptime", "BetterUptime", botMonitor},
	// Headless and automated browsers.
	{"headlesschrome", "HeadlessChrome", botHeadless},
	{"phantomjs", "PhantomJS", botHeadless},
	{"puppeteer", "Puppeteer", botHeadless},
	{"playwright", "Playwright", botHeadless},
	{"selenium", "Selenium", botHeadless},
	{"chrome-lighthouse", "Lighthouse", botHeadless},
	{"slimerjs", "SlimerJS", botHeadless},
	// HTTP libraries and command-line tools.
	{"curl/", "curl", botHTTPClient},
	{"wget/", "Wget", botHTTPClient},
	{"python-requests", "python-requests", botHTTPClient},
	{"python-urllib", "Python-urllib", botHTTPClient},
	{"python-httpx", "python-httpx", botHTTPClient},
	{"aiohttp", "aiohttp", botHTTPClient},
	{"go-http-client", "Go-http-client", botHTTPClient},
	{"okhttp", "okhttp", botHTTPClient},
	{"apache-httpclient", "Apache-HttpClient", botHTTPClient},
	{"java/", "Java", botHTTPClient},
	{"axios/", "axios", botHTTPClient},
	{"node-fetch", "node-fetch", botHTTPClient},
	{"undici", "undici", botHTTPClient},
	{"libwww-perl", "libwww-perl", botHTTPClient},
	{"guzzlehttp", "GuzzleHttp", botHTTPClient},
	{"http.rb", "http.rb", botHTTPClient},
	{"httpie", "HTTPie", botHTTPClient},
	{"postmanruntime", "PostmanRuntime", botHTTPClient},
	{"insomnia", "Insomnia", botHTTPClient},
	{"scrapy", "Scrapy", botHTTPClient},
	{"reqwest", "reqwest", botHTTPClient},
	{"powershell", "PowerShell", botHTTPClient},
	{"dart:io", "Dart", botHTTPClient},
	// SEO and generic crawlers.
	{"ahrefsbot", "AhrefsBot", botCrawler},
	{"semrushbot", "SemrushBot", botCrawler},
	{"mj12bot", "MJ12bot", botCrawler},
	{"dotbot", "DotBot", botCrawler},
	{"dataforseobot", "DataForSeoBot", botCrawler},
	{"blexbot", "BLEXBot", botCrawler},
	{"screaming frog", "Screaming Frog", botCrawler},
}

// genericBotNeedles catch self-declared robots the table does not name. "bot" alone
// would also match phone brands such as CUBOT.
var genericBotNeedles = [...]string{"bot/", "bot;", "bot)", "robot", "spider", "crawler", "crawling", "+http"}

// classifyUA combines mileusna/useragent's parser with hop's own bot and device rules.
// The parser is plain string matching with no tables of its own on the heap: a parser
// that keeps a large trie of small objects (go-useragent, before) had every GC cycle
// mark it, which cost the redirect path several percent of its throughput.
func classifyUA(ua string) uaInfo {
	ua = strings.TrimSpace(ua)
	if ua == "" {
		return uaInfo{device: deviceBot, botReason: botEmpty}
	}
	lower := strings.ToLower(ua)
	for i := range botRules {
		if strings.Contains(lower, botRules[i].needle) {
			return uaInfo{browser: botRules[i].name, device: deviceBot, botReason: botRules[i].reason}
		}
	}
	parsed := useragent.Parse(ua)
	info := uaInfo{browser: uaName(parsed.Name), os: uaName(parsed.OS)}
	for _, n := range genericBotNeedles {
		if strings.Contains(lower, n) {
			info.device, info.botReason = deviceBot, botCrawler
			return info
		}
	}
	if parsed.Bot {
		info.device, info.botReason = deviceBot, botCrawler
		return info
	}
	info.device = deviceFor(parsed, info.os, lower)
	return info
}

// uaName keeps a name the parser found if it looks like one: for a user agent it does
// not know, the parser may return a long piece of it.
func uaName(s string) string {
	if len(s) > maxUANameLen || !utf8.ValidString(s) {
		return ""
	}
	return s
}

const maxUANameLen = 40

// deviceFor maps the parser's device to hop's classes and fixes what it misses:
// TVs, Android tablets (which do not say "Mobile"), iPads and e-readers.
func deviceFor(parsed useragent.UserAgent, os, lower string) string {
	switch {
	case strings.Contains(lower, "smart-tv"), strings.Contains(lower, "smarttv"), strings.Contains(lower, "googletv"),
		strings.Contains(lower, "android tv"), strings.Contains(lower, "appletv"), strings.Contains(lower, "crkey"):
		return deviceOther
	case strings.Contains(lower, "ipad"), strings.Contains(lower, "kindle"), strings.Contains(lower, "silk/"),
		strings.Contains(lower, "tablet"):
		return deviceTablet
	case os == "Android" && !strings.Contains(lower, "mobile"):
		return deviceTablet
	case parsed.Tablet:
		return deviceTablet
	case parsed.Mobile:
		return deviceMobile
	case parsed.Desktop:
		return deviceDesktop
	}
	switch os {
	case "Windows", "macOS", "Linux", "ChromeOS", "FreeBSD", "OpenBSD":
		return deviceDesktop
	case "iOS", "Android":
		return deviceMobile
	}
	return deviceOther
}
