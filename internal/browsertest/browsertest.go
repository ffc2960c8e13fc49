// Package browsertest drives Debian's headless Chromium through chromedp for
// end-to-end tests of what people see in a browser. A Browser is one tab; it records
// every console error, uncaught exception and Content-Security-Policy violation, so a
// test can assert that a page works without any. Chromium comes from
// scripts/ensure-chromium.sh (make test runs it); without it the test fails saying so.
package browsertest

import (
	"cmp"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// runTimeout bounds one Run: a give-up bound for a loaded machine, not a measure.
const runTimeout = 60 * time.Second

// cspBinding is the page-side name the CSP listener reports through.
const cspBinding = "hopReportCSPViolation"

// cspListener runs in every document before the page's own content (injected by the
// DevTools protocol, so the page's CSP does not apply to it) and reports each
// securitypolicyviolation event.
const cspListener = `document.addEventListener("securitypolicyviolation", e =>
  window.` + cspBinding + `(e.violatedDirective + " blocked " + (e.blockedURI || "inline") + " on " + e.documentURI));`

// Browser is one headless Chromium tab.
type Browser struct {
	ctx context.Context

	mu       sync.Mutex
	problems []string
}

// New starts Chromium in a private profile and opens a tab; both end with t.
func New(t testing.TB) *Browser {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Fatal("no Chromium found for the browser tests; install it with: bash scripts/ensure-chromium.sh (make test does)")
	}
	// Exactly these flags, besides the remote-debugging and profile flags chromedp needs.
	flags := []string{"headless", "no-sandbox", "disable-gpu", "disable-background-networking",
		"disable-component-update", "disable-sync", "no-first-run"}
	// Chromium's own temporary files (its singleton socket) go to the test's directory,
	// which the test removes, not to the machine's /tmp, where they were left behind.
	opts := []chromedp.ExecAllocatorOption{chromedp.ExecPath(path), chromedp.UserDataDir(t.TempDir()),
		chromedp.Env("TMPDIR=" + t.TempDir())}
	for _, f := range flags {
		opts = append(opts, chromedp.Flag(f, true))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	b := &Browser{}
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(b.observe))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b.ctx = ctx
	// The first run starts the browser for the tab's whole life: no timeout on it.
	err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, log.Enable, cdp.Empty{}); err != nil {
			return err
		}
		if _, err := cdp.Call(ctx, tg, runtime.Enable, cdp.Empty{}); err != nil {
			return err
		}
		if _, err := cdp.Call(ctx, tg, runtime.AddBinding, runtime.AddBindingParams{Name: cspBinding}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: cspListener})
		return err
	}))
	if err != nil {
		t.Fatalf("start Chromium (%s): %v", path, err)
	}
	return b
}

// observe records the problems a page reports. Network entries ("Failed to load
// resource: ... 404") are left out: a page answering 404 on purpose is not a fault.
func (b *Browser) observe(ev any) {
	var p string
	switch ev := ev.(type) {
	case *log.EventEntryAdded:
		if ev.Entry.Level == log.EntryLevelError && ev.Entry.Source != log.EntrySourceNetwork {
			p = fmt.Sprintf("console %s error: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
		}
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var args []string
			for _, a := range ev.Args {
				args = append(args, cmp.Or(strings.Trim(string(a.Value), `"`), a.Description))
			}
			p = "console.error: " + strings.Join(args, " ")
		}
	case *runtime.EventExceptionThrown:
		p = "uncaught exception: " + ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			p += " " + ev.ExceptionDetails.Exception.Description
		}
	case *runtime.EventBindingCalled:
		if ev.Name == cspBinding {
			p = "CSP violation: " + ev.Payload
		}
	}
	if p != "" {
		b.mu.Lock()
		b.problems = append(b.problems, p)
		b.mu.Unlock()
	}
}

// Run runs actions in the tab and fails t if they fail or take longer than a minute.
func (b *Browser) Run(t testing.TB, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, runTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %v (problems so far: %v)", err, b.Problems())
	}
}

// Problems returns the console errors, exceptions and CSP violations seen so far.
func (b *Browser) Problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.problems...)
}

// Context is the tab's context, for chromedp calls a test makes itself.
func (b *Browser) Context() context.Context { return b.ctx }

// Value runs one action that reads something, such as chromedp.Location() or
// chromedp.Text(sel), and returns what it read; it fails t like Run.
func Value[T any](t testing.TB, b *Browser, action chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, runTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, action)
	if err != nil {
		t.Fatalf("browser: %v (problems so far: %v)", err, b.Problems())
	}
	return v
}
