package browsertest

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// The helper sees what it exists to see: a CSP violation, a console error and an
// uncaught exception, and nothing on a clean page.
func TestBrowserReportsProblems(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		switch r.URL.Path {
		case "/clean":
			w.Header().Set("Content-Security-Policy", "default-src 'none'")
			_, _ = w.Write([]byte(`<!doctype html><title>clean</title><p id="ok">fine</p>`))
		case "/csp":
			w.Header().Set("Content-Security-Policy", "default-src 'none'")
			_, _ = w.Write([]byte(`<!doctype html><title>csp</title><style>p{color:red}</style><p id="ok">styled</p>`))
		case "/script":
			_, _ = w.Write([]byte(`<!doctype html><title>js</title><p id="ok">js</p><script>console.error("boom"); undefinedFunction();</script>`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	b := New(t)
	b.Run(t, chromedp.Navigate(srv.URL+"/clean"), chromedp.WaitVisible(chromedp.ID("ok")))
	if p := b.Problems(); len(p) != 0 {
		t.Fatalf("a clean page reported %v", p)
	}
	b.Run(t, chromedp.Navigate(srv.URL+"/csp"), chromedp.WaitVisible(chromedp.ID("ok")))
	b.Run(t, chromedp.Navigate(srv.URL+"/script"), chromedp.WaitVisible(chromedp.ID("ok")))
	all := strings.Join(b.Problems(), "\n")
	t.Logf("reported:\n%s", all)
	for _, want := range []string{"CSP violation: style-src-elem blocked inline", "console.error: boom", "undefinedFunction"} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
}

// A browser leaves nothing in the machine's temporary directory: Chromium's own files
// live in the test's, which the test removes.
func TestBrowserLeavesNoTempFiles(t *testing.T) {
	t.Parallel()
	before := chromiumTemp(t)
	t.Run("browse", func(t *testing.T) {
		b := New(t)
		b.Run(t, chromedp.Navigate("about:blank"))
	})
	for _, d := range chromiumTemp(t) {
		if !slices.Contains(before, d) {
			t.Errorf("Chromium left %s behind", d)
		}
	}
}

func chromiumTemp(t *testing.T) []string {
	t.Helper()
	ds, err := filepath.Glob(filepath.Join(os.TempDir(), "org.chromium.Chromium.*"))
	if err != nil {
		t.Fatal(err)
	}
	return ds
}
