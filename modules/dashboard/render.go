package dashboard

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/modules/links"
)

const staticPrefix = "/dashboard/static/"

// pageNames are the templates under assets/templates that are pages; layout.html
// holds the layout and the partials every page may use.
var pageNames = []string{"login", "overview", "link", "new", "edit", "delete", "error", "webhooks", "webhooknew", "webhook", "webhookdelete", "webhooksecret",
	"domains", "domainform", "domaindelete"}

var funcs = template.FuncMap{
	"count": formatCount,
	"datetime": func(t time.Time) string {
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	// when is datetime for an optional time; "" when unset.
	"when": func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"date": func(t time.Time) string {
		return t.UTC().Format(time.DateOnly)
	},
	"join": strings.Join,
	// status names a link's status for people; "" is a link from before statuses.
	"status": func(s string) string {
		switch s {
		case links.StatusExpired:
			return "expired"
		case links.StatusLimitReached:
			return "limit reached"
		}
		return "active"
	},
	"deref": func(p *int64) int64 { return *p },
	// str is an optional string's value; "" when unset.
	"str": func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	},
	// ms shows a latency to the millisecond, or to a tenth below 10 ms.
	"ms": func(p *float64) string {
		if *p < 10 {
			return strconv.FormatFloat(*p, 'f', 1, 64) + " ms"
		}
		return strconv.FormatFloat(*p, 'f', 0, 64) + " ms"
	},
}

// loadPages parses every page once at start-up, so a broken template fails New, not
// a request. handlerFuncs are the template functions that need the handler.
func loadPages(handlerFuncs template.FuncMap) (map[string]*template.Template, error) {
	base, err := template.New("layout.html").Funcs(funcs).Funcs(handlerFuncs).ParseFS(assets, "assets/templates/layout.html", "assets/templates/live.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard templates: %w", err)
	}
	pages := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		t, err := base.Clone()
		if err == nil {
			t, err = t.ParseFS(assets, "assets/templates/"+name+".html")
		}
		if err != nil {
			return nil, fmt.Errorf("dashboard template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// staticFile is an embedded asset, served with a long cache lifetime: its URL carries
// a content hash (?v=), so a new build is fetched at once.
type staticFile struct {
	body  []byte
	ctype string
	etag  string
}

func loadStatic() (map[string]staticFile, error) {
	files := map[string]staticFile{}
	err := fs.WalkDir(assets, "assets/static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		files[strings.TrimPrefix(p, "assets/static/")] = staticFile{
			body:  b,
			ctype: cmp.Or(mime.TypeByExtension(path.Ext(p)), "application/octet-stream"),
			etag:  hex.EncodeToString(sum[:6]),
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dashboard assets: %w", err)
	}
	for _, need := range []string{"style.css", "app.js"} {
		if _, ok := files[need]; !ok {
			return nil, fmt.Errorf("dashboard assets: %s is missing", need)
		}
	}
	return files, nil
}

// view is what every page template gets; Data is the page's own data.
type view struct {
	Title    string
	CSS, JS  string
	SignedIn bool
	CSRF     string // the session's CSRF token, for every form
	Refresh  int    // seconds; 0 = no auto-refresh
	Webhooks bool   // the webhook pages exist, for the navigation
	Domains  bool   // the domain pages exist, for the navigation
	Data     any
}

// render executes page name into a buffer first, so a template error becomes a clean
// 500 instead of half a page.
func (h *Handler) render(c echo.Context, status int, name string, v view) error {
	t, ok := h.pages[name]
	if !ok {
		return fmt.Errorf("dashboard: no page %q", name)
	}
	v.CSS, v.JS, v.Webhooks, v.Domains = h.cssURL, h.jsURL, h.webhooks != nil, h.domains != nil
	if s, ok := c.Get(ctxSession).(session); ok {
		v.SignedIn, v.CSRF = true, s.csrf()
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		return fmt.Errorf("render %s: %w", name, err)
	}
	return c.HTMLBlob(status, buf.Bytes())
}

// breakdownRow is one value of a breakdown table.
type breakdownRow struct {
	Value   string
	Clicks  int64
	Percent string
	Share   float64 // 0..1, for a <meter>
}

// breakdown is one breakdown table.
type breakdown struct {
	Title string
	Rows  []breakdownRow
}

// newBreakdown sorts m by clicks, largest first, keeping the "other" bucket last.
func newBreakdown(title string, m map[string]int64) breakdown {
	var total int64
	rows := make([]breakdownRow, 0, len(m))
	for v, n := range m {
		total += n
		rows = append(rows, breakdownRow{Value: v, Clicks: n})
	}
	slices.SortFunc(rows, func(a, b breakdownRow) int {
		if (a.Value == "other") != (b.Value == "other") {
			if a.Value == "other" {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(b.Clicks, a.Clicks), cmp.Compare(a.Value, b.Value))
	})
	for i := range rows {
		if total > 0 {
			rows[i].Share = float64(rows[i].Clicks) / float64(total)
		}
		rows[i].Percent = fmt.Sprintf("%.1f%%", rows[i].Share*100)
	}
	return breakdown{Title: title, Rows: rows}
}

// errorPage is the data of the error page.
type errorPage struct {
	Status  int
	Title   string
	Message string
}

func statusTitle(status int) string {
	return cmp.Or(http.StatusText(status), "Error")
}
