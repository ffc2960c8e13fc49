package client

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Formats are the values of `hop import --from`.
var Formats = []string{"csv", "yourls", "shlink", "kutt", "bitly", "hop"}

// Row is one link read from an import file, with its line for messages.
type Row struct {
	Line int
	Req  LinkRequest
	// Note names what the row held that hop has no place for (Shlink's validSince,
	// deviceLongUrls, crawlable): the link is imported without it, and the note is
	// shown beside the row's outcome.
	Note string
}

// RowError is a row that could not be read; the rest of the file is still imported.
type RowError struct {
	Line   int
	Reason string
}

// ErrUnknownFormat is returned for a --from value not in Formats.
var ErrUnknownFormat = errors.New("unknown import format (want csv, yourls, shlink, kutt, bitly or hop)")

// maxImportBytes bounds an import file read into memory.
const maxImportBytes = 1 << 30

// Read parses an import file of the given format. Rows that cannot be read are
// returned as RowErrors and never stop the rest; err is for a file that cannot be read
// at all (not CSV, not JSON, no url column).
func Read(format string, r io.Reader) (rows []Row, bad []RowError, err error) {
	data, err := io.ReadAll(io.LimitReader(r, maxImportBytes))
	if err != nil {
		return nil, nil, fmt.Errorf("read import file: %w", err)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // spreadsheet exports often start with a BOM
	rows, bad, err = readFormat(format, data)
	for i := range rows {
		rows[i].Req.Title = oneLine(rows[i].Req.Title)
	}
	return rows, bad, err
}

// oneLine turns the line breaks and tabs of a title into single spaces. Other
// shorteners store the page titles they fetched as they came, often across lines; hop
// keeps titles on one line, and a link is worth more than its title's layout. The
// Unicode line and paragraph separators are breaks too, though hop would store them.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\t\n\v\f\r\u0085\u2028\u2029") {
		return s
	}
	var b strings.Builder
	space := false
	for _, r := range strings.TrimSpace(s) {
		isBreak := unicode.IsControl(r) || r == '\u2028' || r == '\u2029'
		if unicode.IsSpace(r) && (isBreak || space) {
			if !space {
				b.WriteByte(' ')
				space = true
			}
			continue
		}
		space = r == ' '
		b.WriteRune(r)
	}
	return b.String()
}

func readFormat(format string, data []byte) (rows []Row, bad []RowError, err error) {
	switch format {
	case "csv":
		return readCSV(data, csvColumns)
	case "yourls":
		return readYOURLS(data)
	case "shlink":
		if looksJSON(data) {
			return readJSON(data, shlinkItem)
		}
		return readCSV(data, shlinkColumns)
	case "kutt":
		return readJSON(data, kuttItem)
	case "bitly":
		return readCSV(data, bitlyColumns)
	case "hop":
		return readJSONLines(data, hopItem)
	}
	return nil, nil, ErrUnknownFormat
}

func looksJSON(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && (b[0] == '[' || b[0] == '{')
}

// columns maps a CSV header (lowercased, trimmed) to what the row means.
type columns struct {
	url, slug, tags, title, created, expires, maxClicks, domain, clicks []string
	// Columns of hop's own CSV export: total_clicks is added to the imported clicks,
	// as `--from hop` does, and a password-protected link is refused.
	total, redirectStatus, forwardQuery, expiredURL, hasPassword []string
	// used is clicks_used: what the source's max_clicks had counted, taken with max_clicks.
	used []string
	// slugFromURL: the slug column holds a short URL (https://bit.ly/abc); its path is the slug.
	slugFromURL bool
	// customSlug: a column of custom short URLs that win over slug when set.
	customSlug []string
}

// csvColumns is hop's own CSV import: header with url plus optional columns, every
// column `hop export --format csv` writes among them.
var csvColumns = columns{
	url: []string{"url"}, slug: []string{"slug"}, tags: []string{"tags"}, title: []string{"title"},
	created: []string{"created_at"}, expires: []string{"expires_at"}, maxClicks: []string{"max_clicks"},
	domain: []string{"domain"}, clicks: []string{"imported_clicks", "clicks"}, total: []string{"total_clicks"},
	redirectStatus: []string{"redirect_status"}, forwardQuery: []string{"forward_query"}, expiredURL: []string{"expired_url"},
	hasPassword: []string{"has_password"}, used: []string{"clicks_used"},
}

// shlinkColumns is shlink-web-client's "Export" of short URLs (ExportableShortUrl):
// createdAt, domain, shortCode, shortUrl, longUrl, title, tags, visits.
var shlinkColumns = columns{
	url: []string{"longurl"}, slug: []string{"shortcode"}, tags: []string{"tags"}, title: []string{"title"},
	created: []string{"createdat"}, domain: []string{"domain"}, clicks: []string{"visits"},
}

// bitlyColumns covers Bitly's CSV export of links, whose header has changed over the
// years: "Link"/"Bitlink" is the short link, "Custom Link"/"Custom Bitlinks" the custom
// back-half, and "Destination URL"/"Long URL" the target.
var bitlyColumns = columns{
	url:         []string{"destination url", "long url", "long_url", "original url"},
	slug:        []string{"link", "bitlink", "short url", "short link"},
	customSlug:  []string{"custom link", "custom links", "custom bitlink", "custom bitlinks", "custom_bitlinks", "custom back-half"},
	slugFromURL: true,
	title:       []string{"title"}, tags: []string{"tags"},
	created: []string{"date created", "created", "created_at", "creation date"},
	clicks:  []string{"engagements", "clicks", "total clicks", "total engagements"},
}

// newCSVReader reads CSV leniently: a quote inside an unquoted field (Big 5" screen)
// is taken literally, as spreadsheets write it, instead of stopping the file.
func newCSVReader(data []byte) *csv.Reader {
	cr := csv.NewReader(bytes.NewReader(data))
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	cr.LazyQuotes = true
	return cr
}

// wellFormed reports whether rec, the bytes of one record spanning several lines, is
// one record by the strict rules of CSV (RFC 4180): quoted fields closed, inner quotes
// doubled. A lenient read of a quote that never closes runs on over the following
// lines, taking them as one field; only a strict multi-line field is believed.
func wellFormed(rec []byte) bool {
	cr := csv.NewReader(bytes.NewReader(rec))
	cr.FieldsPerRecord = -1
	_, err := cr.Read()
	return err == nil && cr.InputOffset() == int64(len(rec))
}

func readCSV(data []byte, cols columns) ([]Row, []RowError, error) {
	cr := newCSVReader(data)
	head, err := cr.Read()
	if err != nil {
		return nil, nil, fmt.Errorf("read CSV header: %w", err)
	}
	head = slices.Clone(head) // ReuseRecord
	index := map[string]int{}
	for i, h := range head {
		index[strings.ToLower(strings.TrimSpace(h))] = i
	}
	col := func(names []string) int {
		for _, n := range names {
			if i, ok := index[n]; ok {
				return i
			}
		}
		return -1
	}
	iURL := col(cols.url)
	if iURL < 0 {
		return nil, nil, fmt.Errorf("the CSV header has no %q column (it has %s)", cols.url[0], strings.Join(head, ", "))
	}
	iSlug, iCustom, iTags, iTitle := col(cols.slug), col(cols.customSlug), col(cols.tags), col(cols.title)
	iCreated, iExpires, iMax, iDomain, iClicks := col(cols.created), col(cols.expires), col(cols.maxClicks), col(cols.domain), col(cols.clicks)
	iTotal, iStatus, iForward, iExpiredURL, iPassword := col(cols.total), col(cols.redirectStatus), col(cols.forwardQuery), col(cols.expiredURL), col(cols.hasPassword)
	iUsed := col(cols.used)

	li := newLineIndex(data)
	lineStart := func(line int) int64 { // byte offset of a 1-based line
		if line <= 1 {
			return 0
		}
		return int64(li[line-2] + 1)
	}
	lastLine := len(li) + 1
	if len(data) > 0 && data[len(data)-1] == '\n' {
		lastLine--
	}
	// notRead ends the file at line first, saying why and how many lines are left.
	notRead := func(first int, why string) RowError {
		return RowError{Line: first, Reason: fmt.Sprintf("%s; lines %d to %d (%d lines) were not read", why, first, lastLine, lastLine-first+1)}
	}
	// base and baseLine are where cr started: after a record that could not be read,
	// reading starts again on the next line with a new reader. Each such record may
	// have run on to the end of the file; reread bounds what that costs.
	base, baseLine := int64(0), 1
	reread, maxReread := int64(0), 4*int64(len(data))+1<<20
	var rows []Row
	var bad []RowError
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			// Not expected of a lenient reader on bytes in memory; if it happens, the rest
			// of the file is reported, never dropped in silence.
			return rows, append(bad, notRead(li.line(base+cr.InputOffset()), err.Error())), nil
		}
		line, _ := cr.FieldPos(0)
		line += baseLine - 1
		end := base + cr.InputOffset()
		if start := lineStart(line); li.line(end-1) > line && !wellFormed(data[start:end]) {
			bad = append(bad, RowError{Line: line, Reason: "a quoted field opened on this line is never closed properly; the row is skipped and the next line read on its own"})
			if reread += end - start; reread > maxReread {
				return rows, append(bad, notRead(line+1, "too many quoted fields that never close; correct the quotes and import the file again")), nil
			}
			base, baseLine = lineStart(line+1), line+1
			cr = newCSVReader(data[base:])
			continue
		}
		get := func(i int) string {
			if i < 0 || i >= len(rec) {
				return ""
			}
			return strings.TrimSpace(rec[i])
		}
		if len(rec) == 1 && get(0) == "" {
			continue // blank line
		}
		req := LinkRequest{URL: get(iURL), Title: get(iTitle), Domain: get(iDomain)}
		req.Slug = get(iSlug)
		if cols.slugFromURL {
			req.Slug = slugOf(req.Slug)
			if c := firstField(get(iCustom)); c != "" {
				req.Slug = slugOf(c)
			}
		}
		var reasons []string
		if req.Tags, err = readTags(get(iTags)); err != nil {
			reasons = append(reasons, err.Error())
		}
		if v := get(iCreated); v != "" {
			if t, err := parseTime(v); err != nil {
				reasons = append(reasons, "created_at: "+err.Error())
			} else {
				req.CreatedAt = &t
			}
		}
		if v := get(iExpires); v != "" {
			if t, err := parseTime(v); err != nil {
				reasons = append(reasons, "expires_at: "+err.Error())
			} else {
				req.ExpiresAt = &t
			}
		}
		if v := get(iMax); v != "" {
			if n, err := strconv.ParseInt(v, 10, 64); err != nil {
				reasons = append(reasons, fmt.Sprintf("max_clicks: %q is not an integer", v))
			} else {
				req.MaxClicks = &n
			}
		}
		for _, c := range []struct {
			i    int
			name string
		}{{iClicks, "clicks"}, {iTotal, "total_clicks"}} {
			if v := get(c.i); v != "" {
				if n, err := strconv.ParseInt(strings.ReplaceAll(v, ",", ""), 10, 64); err != nil {
					reasons = append(reasons, fmt.Sprintf("%s: %q is not an integer", c.name, v))
				} else {
					req.ImportedClicks += n
				}
			}
		}
		if v := get(iStatus); v != "" {
			if n, err := strconv.Atoi(v); err != nil {
				reasons = append(reasons, fmt.Sprintf("redirect_status: %q is not an integer", v))
			} else {
				req.RedirectStatus = n
			}
		}
		if v := get(iForward); v != "" {
			if b, err := strconv.ParseBool(v); err != nil {
				reasons = append(reasons, fmt.Sprintf("forward_query: %q is neither true nor false", v))
			} else {
				req.ForwardQuery = &b
			}
		}
		if v := get(iExpiredURL); v != "" {
			req.ExpiredURL = &v
		}
		if v := get(iUsed); v != "" && req.MaxClicks != nil { // without a limit, the target counts
			if n, err := strconv.ParseInt(v, 10, 64); err != nil {
				reasons = append(reasons, fmt.Sprintf("clicks_used: %q is not an integer", v))
			} else {
				req.ClicksUsed = n
			}
		}
		if v := get(iPassword); v != "" {
			if b, err := strconv.ParseBool(v); err != nil {
				reasons = append(reasons, fmt.Sprintf("has_password: %q is neither true nor false", v))
			} else if b {
				reasons = append(reasons, fmt.Sprintf("link %q is password-protected; exports never hold passwords, so create it by hand", req.Slug))
			}
		}
		if req.URL == "" {
			reasons = append(reasons, "no url")
		}
		if len(reasons) > 0 {
			bad = append(bad, RowError{Line: line, Reason: strings.Join(reasons, "; ")})
			continue
		}
		rows = append(rows, Row{Line: line, Req: req})
	}
	return rows, bad, nil
}

// readYOURLS reads the yourls_url table exported as CSV: keyword, url, title,
// timestamp, ip, clicks, with or without a header row.
func readYOURLS(data []byte) ([]Row, []RowError, error) {
	if !hasYOURLSHeader(data) {
		data = append([]byte("keyword,url,title,timestamp,ip,clicks\n"), data...)
		rows, bad, err := readCSV(data, columns{url: []string{"url"}, slug: []string{"keyword"}, title: []string{"title"}, created: []string{"timestamp"}, clicks: []string{"clicks"}})
		// Line numbers of the file as given, without the header added here.
		for i := range rows {
			rows[i].Line--
		}
		for i := range bad {
			bad[i].Line--
		}
		return rows, bad, err
	}
	return readCSV(data, columns{url: []string{"url"}, slug: []string{"keyword"}, title: []string{"title"}, created: []string{"timestamp"}, clicks: []string{"clicks"}})
}

// hasYOURLSHeader reports whether the first line that is not blank names the yourls_url
// columns: it has whole cells keyword and url, not merely the words (a first link to
// /?keyword=x), and no cell holding a URL, as every data row does (a link whose
// keyword is "keyword" and whose title is "URL").
func hasYOURLSHeader(data []byte) bool {
	// The first line with anything on it: the CSV reader skips blank ones too.
	var first []byte
	for len(data) > 0 && len(bytes.TrimSpace(first)) == 0 {
		first, data, _ = bytes.Cut(data, []byte("\n"))
	}
	r := csv.NewReader(bytes.NewReader(first))
	r.LazyQuotes, r.FieldsPerRecord = true, -1
	fields, err := r.Read()
	if err != nil {
		return false
	}
	var keyword, url bool
	for _, f := range fields {
		f = strings.ToLower(strings.TrimSpace(f))
		if strings.Contains(f, "://") {
			return false
		}
		keyword = keyword || f == "keyword"
		url = url || f == "url"
	}
	return keyword && url
}

// slugOf returns the path of a short URL (bit.ly/abc, https://bit.ly/abc), or s when
// it is a bare back-half already.
func slugOf(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	if !strings.Contains(s, "://") {
		if !strings.Contains(s, "/") {
			return s
		}
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	return strings.Trim(u.Path, "/")
}

// firstField is the first of several values in one cell (Bitly lists custom links
// separated by commas or spaces).
func firstField(s string) string {
	f := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '|' || r == ';' })
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// readTags reads a tags cell: the JSON array `hop export --format csv` writes
// (["news","with,comma"]), else tags separated by , ; or |. A cell that is JSON, or
// starts as hop writes one, must be an array of strings: split, a damaged one would
// become tags such as `["a"` and `1]`.
func readTags(s string) ([]string, error) {
	if strings.HasPrefix(s, "[") {
		var tags []string
		err := json.Unmarshal([]byte(s), &tags)
		if err == nil {
			return tags, nil
		}
		if strings.HasPrefix(s, `["`) || json.Valid([]byte(s)) {
			return nil, fmt.Errorf("tags: %q is not a JSON array of strings like [\"news\",\"a,b\"]", s)
		}
	}
	return splitTags(s), nil
}

func splitTags(s string) []string {
	if s == "" {
		return nil
	}
	var out []string
	for _, t := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '|' || r == ';' }) {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// timeLayouts are the date forms import files use: RFC 3339 (hop, Shlink, Kutt),
// SQL datetimes (YOURLS, in UTC), Bitly's and bare dates.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999-0700", // Bitly's API: an offset without a colon
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05 MST",
	"2006-01-02 15:04:05",
	"2006-01-02T15:04:05",
	"2006-01-02 15:04",
	"2006-01-02",
	"01/02/2006 15:04:05",
	"01/02/2006",
}

// parseTime reads a date in one of timeLayouts (UTC when it names no zone) or as Unix
// seconds.
func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 && n < 1<<35 {
		return time.Unix(n, 0).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a date (want RFC 3339, like 2024-01-02T15:04:05Z)", s)
}

// lineIndex turns byte offsets into 1-based line numbers.
type lineIndex []int

func newLineIndex(data []byte) lineIndex {
	idx := lineIndex{}
	for i, b := range data {
		if b == '\n' {
			idx = append(idx, i)
		}
	}
	return idx
}

func (li lineIndex) line(off int64) int {
	return sort.SearchInts(li, int(off)) + 1
}

// readJSON reads a JSON array of items, or an object holding it under "data" (Kutt's
// list answer) or "shortUrls.data" (Shlink's), converting each with conv.
func readJSON(data []byte, conv func(json.RawMessage) (Row, error)) ([]Row, []RowError, error) {
	li := newLineIndex(data)
	trimmed := bytes.TrimSpace(data)
	start := int64(len(data) - len(bytes.TrimLeft(data, " \t\r\n")))
	if len(trimmed) > 0 && trimmed[0] == '{' {
		var env struct {
			Data      json.RawMessage `json:"data"`
			ShortURLs struct {
				Data json.RawMessage `json:"data"`
			} `json:"shortUrls"`
		}
		if err := json.Unmarshal(trimmed, &env); err != nil {
			return nil, nil, fmt.Errorf("read JSON: %w", err)
		}
		arr := env.Data
		if arr == nil {
			arr = env.ShortURLs.Data
		}
		if arr == nil {
			return nil, nil, errors.New(`read JSON: expected an array of links, or an object with "data" or "shortUrls.data"`)
		}
		start = int64(bytes.Index(data, arr))
		trimmed = arr
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, nil, errors.New("read JSON: expected an array of links")
	}
	var rows []Row
	var bad []RowError
	for dec.More() {
		off := start + dec.InputOffset()
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return rows, append(bad, RowError{Line: li.line(off), Reason: err.Error()}), nil
		}
		// The raw value ends where the decoder stands now.
		line := li.line(start + dec.InputOffset() - int64(len(raw)))
		row, err := conv(raw)
		if err != nil {
			bad = append(bad, RowError{Line: line, Reason: err.Error()})
			continue
		}
		row.Line = line
		rows = append(rows, row)
	}
	return rows, bad, nil
}

// readJSONLines reads one JSON object per line (hop export).
func readJSONLines(data []byte, conv func(json.RawMessage) (Row, error)) ([]Row, []RowError, error) {
	var rows []Row
	var bad []RowError
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		row, err := conv(line)
		if err != nil {
			bad = append(bad, RowError{Line: i + 1, Reason: err.Error()})
			continue
		}
		row.Line = i + 1
		rows = append(rows, row)
	}
	return rows, bad, nil
}

// flexTime is a JSON date as strings in one of timeLayouts; null or "" is unset.
type flexTime struct{ t *time.Time }

func (f *flexTime) UnmarshalJSON(b []byte) error {
	var s string
	if string(b) == "null" {
		return nil
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a date must be a string, not %s", b)
	}
	if s == "" {
		return nil
	}
	t, err := parseTime(s)
	if err != nil {
		return err
	}
	f.t = &t
	return nil
}

// shlinkItem converts one short URL of Shlink's API (GET /rest/v3/short-urls):
// shortCode, longUrl, dateCreated, tags, title, domain, forwardQuery,
// meta.validUntil/maxVisits and visitsSummary.total (visitsCount before Shlink 3.4).
// What hop has no place for (meta.validSince, deviceLongUrls, crawlable) is left out
// and noted.
func shlinkItem(raw json.RawMessage) (Row, error) {
	var s struct {
		ShortCode    string   `json:"shortCode"`
		LongURL      string   `json:"longUrl"`
		DateCreated  flexTime `json:"dateCreated"`
		Tags         []string `json:"tags"`
		Title        *string  `json:"title"`
		Domain       *string  `json:"domain"`
		ForwardQuery *bool    `json:"forwardQuery"`
		// Reported only, like validSince: hop has one target per link and one robots
		// policy for all.
		DeviceLongURLs map[string]*string `json:"deviceLongUrls"`
		Crawlable      bool               `json:"crawlable"`
		Meta           struct {
			ValidSince *string  `json:"validSince"` // as written: it is only reported
			ValidUntil flexTime `json:"validUntil"`
			MaxVisits  *int64   `json:"maxVisits"`
		} `json:"meta"`
		VisitsSummary *struct {
			Total int64 `json:"total"`
		} `json:"visitsSummary"`
		VisitsCount int64 `json:"visitsCount"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return Row{}, jsonItemError(err)
	}
	if s.LongURL == "" {
		return Row{}, errors.New("no longUrl")
	}
	r := LinkRequest{URL: s.LongURL, Slug: s.ShortCode, Tags: s.Tags, CreatedAt: s.DateCreated.t, ExpiresAt: s.Meta.ValidUntil.t,
		MaxClicks: s.Meta.MaxVisits, ForwardQuery: s.ForwardQuery, ImportedClicks: s.VisitsCount}
	if s.VisitsSummary != nil {
		r.ImportedClicks = s.VisitsSummary.Total
	}
	if r.MaxClicks != nil { // its visits so far: never more uses than Shlink had left
		r.ClicksUsed = r.ImportedClicks
	}
	if s.Title != nil {
		r.Title = *s.Title
	}
	if s.Domain != nil {
		r.Domain = *s.Domain
	}
	var notes []string
	if s.Meta.ValidSince != nil && strings.TrimSpace(*s.Meta.ValidSince) != "" {
		notes = append(notes, "meta.validSince "+strings.TrimSpace(*s.Meta.ValidSince)+
			" was not kept: hop links have no start date, so the link answers as soon as it is imported")
	}
	var devices []string
	for d, u := range s.DeviceLongURLs {
		if u != nil && strings.TrimSpace(*u) != "" {
			devices = append(devices, d)
		}
	}
	if len(devices) > 0 {
		slices.Sort(devices)
		notes = append(notes, "deviceLongUrls ("+strings.Join(devices, ", ")+") were not kept: hop sends every device to longUrl")
	}
	if s.Crawlable {
		notes = append(notes, "crawlable was not kept: whether crawlers may follow hop's links is one setting for all of them (HOP_ROBOTS_ALLOW)")
	}
	return Row{Req: r, Note: strings.Join(notes, "; ")}, nil
}

// kuttItem converts one link of Kutt's API (GET /api/v2/links): address, target,
// description, created_at, expire_in, visit_count, banned, password (a flag only).
func kuttItem(raw json.RawMessage) (Row, error) {
	var k struct {
		Address     string   `json:"address"`
		Target      string   `json:"target"`
		Description *string  `json:"description"`
		CreatedAt   flexTime `json:"created_at"`
		ExpireIn    flexTime `json:"expire_in"`
		VisitCount  int64    `json:"visit_count"`
		Banned      bool     `json:"banned"`
		Password    bool     `json:"password"`
		Domain      *string  `json:"domain"`
	}
	if err := json.Unmarshal(raw, &k); err != nil {
		return Row{}, jsonItemError(err)
	}
	switch {
	case k.Target == "":
		return Row{}, errors.New("no target")
	case k.Banned:
		return Row{}, fmt.Errorf("link %q is banned in Kutt; not imported", k.Address)
	case k.Password:
		// Kutt exports only that a password exists; importing it open would expose it.
		return Row{}, fmt.Errorf("link %q is password-protected in Kutt, whose export has no password; create it by hand", k.Address)
	}
	r := LinkRequest{URL: k.Target, Slug: k.Address, CreatedAt: k.CreatedAt.t, ExpiresAt: k.ExpireIn.t, ImportedClicks: k.VisitCount}
	if k.Description != nil {
		r.Title = *k.Description
	}
	if k.Domain != nil {
		r.Domain = *k.Domain
	}
	return Row{Req: r}, nil
}

// hopItem converts one line of `hop export`: the link as the API shows it. Its own
// clicks become the new link's imported_clicks, added to those it had imported, and a
// limited link keeps what it has used of its limit.
func hopItem(raw json.RawMessage) (Row, error) {
	var l Link
	if err := json.Unmarshal(raw, &l); err != nil {
		return Row{}, jsonItemError(err)
	}
	if l.OriginalURL == "" {
		return Row{}, errors.New("no original_url")
	}
	if l.HasPassword {
		return Row{}, fmt.Errorf("link %q is password-protected; exports never hold passwords, so create it by hand", l.Slug)
	}
	r := LinkRequest{URL: l.OriginalURL, Slug: l.Slug, Domain: l.Domain, Tags: l.Tags, ExpiresAt: l.ExpiresAt, MaxClicks: l.MaxClicks,
		RedirectStatus: l.RedirectStatus, ForwardQuery: &l.ForwardQuery, ExpiredURL: l.ExpiredURL, ImportedClicks: l.TotalClicks + l.ImportedClicks}
	if l.MaxClicks != nil {
		r.ClicksUsed = l.ClicksUsed
	}
	if !l.CreatedAt.IsZero() {
		r.CreatedAt = &l.CreatedAt
	}
	if l.Title != nil {
		r.Title = *l.Title
	}
	return Row{Req: r}, nil
}

func jsonItemError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("field %q must be %s, not %s", te.Field, te.Type, te.Value)
	}
	return err
}
