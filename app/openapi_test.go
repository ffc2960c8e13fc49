package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/testenv"
)

// The tests here keep app/openapi.yaml honest in both directions: kin-openapi validates
// the document, every route the running router registers is documented and every
// documented operation is registered, and every response an end-to-end test receives
// through instance.do is validated against it (status, media type, JSON schema).

// apiSpec is the loaded document and a router over its paths.
type apiSpec struct {
	doc    *openapi3.T
	router routers.Router
}

// loadSpec parses and validates app/openapi.yaml once per test binary.
var loadSpec = sync.OnceValues(func() (*apiSpec, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openAPIYAML)
	if err != nil {
		return nil, err
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, err
	}
	// Strict for tests: an object schema that lists its properties allows no others
	// unless it says so, so a field added to a handler without documenting it fails.
	seen := map[*openapi3.Schema]bool{}
	var strict func(s *openapi3.SchemaRef)
	strict = func(s *openapi3.SchemaRef) {
		if s == nil || s.Value == nil || seen[s.Value] {
			return
		}
		v := s.Value
		seen[v] = true
		if len(v.Properties) > 0 && v.AdditionalProperties.Has == nil && v.AdditionalProperties.Schema == nil {
			no := false
			v.AdditionalProperties.Has = &no
		}
		for _, p := range v.Properties {
			strict(p)
		}
		strict(v.Items)
		strict(v.AdditionalProperties.Schema)
		for _, l := range []openapi3.SchemaRefs{v.OneOf, v.AnyOf, v.AllOf} {
			for _, c := range l {
				strict(c)
			}
		}
	}
	for _, s := range doc.Components.Schemas {
		strict(s)
	}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for _, r := range op.Responses.Map() {
				if r.Value == nil {
					continue
				}
				for _, mt := range r.Value.Content {
					strict(mt.Schema)
				}
			}
		}
	}
	// Match on paths only: tests run on loopback ports, not the documented server.
	doc.Servers = nil
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, err
	}
	return &apiSpec{doc: doc, router: router}, nil
})

func spec(t testing.TB) *apiSpec {
	t.Helper()
	s, err := loadSpec()
	if err != nil {
		t.Fatalf("app/openapi.yaml: %v", err)
	}
	return s
}

// webUIPrefix is where the dashboard's HTML pages live; they are not API operations.
const webUIPrefix = "/dashboard"

// isWebUI reports whether path belongs to the dashboard rather than the API.
func isWebUI(path string) bool {
	return path == webUIPrefix || strings.HasPrefix(path, webUIPrefix+"/")
}

// checkResponse validates one response against the document: the operation's status
// must be documented, and so must the media type; JSON bodies must match their schema.
// Requests to paths that are not API operations (the dashboard) are left alone: the
// route test covers those.
func checkResponse(t testing.TB, req *http.Request, r response) {
	t.Helper()
	if isWebUI(req.URL.Path) {
		return
	}
	s := spec(t)
	route, params, err := s.router.FindRoute(req)
	if req.Method == http.MethodHead {
		// HEAD of a GET, which the document states once for every GET, unless the
		// path documents a HEAD of its own.
		get := req.Clone(req.Context())
		get.Method = http.MethodGet
		if gr, gp, gerr := s.router.FindRoute(get); gerr == nil && gr.PathItem.Head == nil {
			route, params, err = gr, gp, nil
		}
	}
	routerSaidNo := (r.Status == http.StatusNotFound || r.Status == http.StatusMethodNotAllowed) &&
		bytes.Contains(r.Body, []byte(`"type":"about:blank"`))
	if routerSaidNo && (err != nil || (route.Path != req.URL.Path && s.doc.Paths.Value(req.URL.Path) != nil)) {
		// No operation, and the router said so: a path or a method that is none. A
		// method a fixed path (/live) does not take is none, though the document
		// matches it to a templated one (POST /{slug}).
		return
	}
	if err != nil {
		t.Errorf("%s %s answered %d, but the document has no such operation: %v", req.Method, req.URL.Path, r.Status, err)
		return
	}
	name := req.Method + " " + route.Path
	// Echo's own 404/405 mean no route answered, whatever the document says.
	if (r.Status == http.StatusNotFound || r.Status == http.StatusMethodNotAllowed) && bytes.Contains(r.Body, []byte(`"type":"about:blank"`)) {
		t.Errorf("%s: no route answers it (%d from the router): %s", name, r.Status, r.Body)
		return
	}
	documented := route.Operation.Responses.Status(r.Status)
	if documented == nil {
		documented = route.Operation.Responses.Default()
	}
	if documented == nil || documented.Value == nil {
		t.Errorf("%s answered %d, which is not documented: %s", name, r.Status, r.Body)
		return
	}
	content := documented.Value.Content
	if req.Method == http.MethodHead {
		return
	}
	if len(content) == 0 {
		if len(r.Body) > 0 {
			t.Errorf("%s answered %d with a body, but none is documented: %s", name, r.Status, r.Body)
		}
		return
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if content.Get(mt) == nil {
		t.Errorf("%s: %d answered %q, documented %v", name, r.Status, mt, slices.Sorted(func(yield func(string) bool) {
			for k := range content {
				if !yield(k) {
					return
				}
			}
		}))
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 r.Status,
		Header:                 r.Header,
		Body:                   io.NopCloser(bytes.NewReader(r.Body)),
		Options: &openapi3filter.Options{
			IncludeResponseStatus: true,
			MultiError:            true,
			// Only JSON bodies are checked against schemas; HTML pages, images, CSV and
			// event streams are checked for their documented media type above.
			ExcludeResponseBody: mt != "application/json" && !strings.HasSuffix(mt, "+json"),
		},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s: %d does not match app/openapi.yaml: %v\nbody: %s", name, r.Status, err, r.Body)
	}
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	t.Parallel()
	s := spec(t)
	if s.doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi = %v, want 3.1.0", s.doc.OpenAPI)
	}
	ids := map[string]bool{}
	for path, item := range s.doc.Paths.Map() {
		for method, op := range item.Operations() {
			name := method + " " + path
			if op.OperationID == "" || ids[op.OperationID] {
				t.Errorf("%s: operationId %q missing or not unique", name, op.OperationID)
			}
			ids[op.OperationID] = true
			// Management operations use the global API-key security and document 401
			// and 429; public ones opt out explicitly.
			public := op.Security != nil && len(*op.Security) == 0
			if !public {
				for _, code := range []int{401, 429} {
					if op.Responses.Status(code) == nil {
						t.Errorf("%s: an authenticated operation must document %d", name, code)
					}
				}
			}
			// Errors are problem documents, except pages meant for browsers and the
			// health report, whose 503 is the usual health document.
			for code, r := range op.Responses.Map() {
				if code[0] != '4' && code[0] != '5' || path == "/health" {
					continue
				}
				if r.Value.Content.Get("application/problem+json") == nil && r.Value.Content.Get("text/html") == nil {
					t.Errorf("%s: response %s is not application/problem+json", name, code)
				}
			}
		}
	}
}

// TestOpenAPIDocumentsEveryRegisteredRoute compares the running router's routes
// (Echo's e.Routes() of a built hop) with the document, both ways.
func TestOpenAPIDocumentsEveryRegisteredRoute(t *testing.T) {
	t.Parallel()
	documented := map[string]bool{}
	for path, item := range spec(t).doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	gets := map[string]bool{} // paths with a documented GET
	for op := range documented {
		if p, ok := strings.CutPrefix(op, http.MethodGet+" "); ok {
			gets[p] = true
		}
	}
	registered := 0
	for _, r := range builtRoutes(t) {
		if isWebUI(r.Path) || strings.HasPrefix(r.Name, "github.com/labstack/echo") {
			continue // the dashboard's pages are a UI; Echo's own not-found routes are no API
		}
		registered++
		key := r.Method + " " + openAPIPath(r.Path)
		if r.Method == http.MethodHead && !documented[key] && gets[openAPIPath(r.Path)] {
			continue // HEAD of a GET, as the document's description says every GET has
		}
		if !documented[key] {
			t.Errorf("%s %s (%s) is registered but not documented in app/openapi.yaml as %s", r.Method, r.Path, r.Name, key)
		}
		delete(documented, key)
	}
	if registered < 10 {
		t.Fatalf("the router lists only %d routes", registered)
	}
	for op := range documented {
		t.Errorf("%s is documented in app/openapi.yaml but no route registers it", op)
	}
}

// builtRoutes builds hop as it serves (not started) and returns its router's routes.
func builtRoutes(t *testing.T) []*echo.Route {
	t.Helper()
	db := testenv.NewDB(t)
	env := map[string]string{"DATABASE_URL": db.URL, "HOP_ADDR": "127.0.0.1:0", "HOP_DATA_DIR": t.TempDir(), "HOP_API_KEY": testAPIKey}
	cfg, err := loadConfig("", false, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	cfg.data = newDataDir(cfg, logger)
	defer cfg.data.Close()
	svc, err := build(t.Context(), cfg, logger, func(string) string { return "" })
	if svc != nil {
		defer svc.close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return svc.echo.Routes()
}

// openAPIPath turns an Echo route path into an OpenAPI path template: ":slug" becomes
// "{slug}".
func openAPIPath(echoPath string) string {
	return regexp.MustCompile(`:([A-Za-z0-9_]+)`).ReplaceAllString(echoPath, "{$1}")
}

// exampleBody returns the documented example of op's request body, if any.
func exampleBody(op *openapi3.Operation) (contentType string, body []byte) {
	if op.RequestBody == nil || op.RequestBody.Value == nil {
		return "", nil
	}
	for ct, mt := range op.RequestBody.Value.Content {
		switch ct {
		case "application/json":
			b, _ := json.Marshal(mt.Example)
			return ct, b
		case "application/x-www-form-urlencoded":
			return ct, []byte("password=not-needed")
		}
	}
	return "", nil
}

// TestOpenAPIMatchesRunningServer calls every documented operation on a running hop with
// its documented example; instance.do validates each answer against the document.
// Unauthenticated calls to management operations must answer the documented 401.
func TestOpenAPIMatchesRunningServer(t *testing.T) {
	t.Parallel()
	h := startHop(t, allowPrivate) // the documented webhook example names a host not resolved here

	served := h.do(t, http.MethodGet, "/openapi.json", nil)
	mustStatus(t, served, http.StatusOK)
	want, err := openAPIJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(served.Body, want) {
		t.Fatal("/openapi.json does not serve app/openapi.yaml")
	}

	const slug = "oapi-Link_1"
	h.createLink(t, map[string]any{"url": "https://example.com/openapi", "slug": slug, "tags": []string{"docs"}})
	// Operations on a domain name it by the placeholder below.
	mustStatus(t, h.api(t, http.MethodPost, "/domains", map[string]any{"host": "placeholder"}), http.StatusCreated)

	// A webhook on a local receiver with one delivery fills {id} and {delivery}.
	hook := h.createWebhook(t, newReceiver(t), nil)
	hookID := fmt.Sprint(hook["id"])
	ping := h.api(t, http.MethodPost, "/webhooks/"+hookID+"/test", nil)
	mustStatus(t, ping, http.StatusOK)
	deliveryID := fmt.Sprint(ping.JSON(t)["id"])

	type operation struct {
		method, path string
		op           *openapi3.Operation
	}
	var ops []operation
	for path, item := range spec(t).doc.Paths.Map() {
		for method, op := range item.Operations() {
			ops = append(ops, operation{method, path, op})
		}
	}
	// Deleting goes last: the other operations need the link.
	slices.SortStableFunc(ops, func(a, b operation) int {
		return boolCmp(a.method == http.MethodDelete, b.method == http.MethodDelete)
	})
	call := func(method, target, ct string, body []byte, authed bool) response {
		headers := []string{"Content-Type", ct}
		if authed {
			headers = append(headers, "X-Api-Key", h.Key)
		}
		return h.do(t, method, target, body, headers...)
	}
	for _, o := range ops {
		name := o.method + " " + o.path
		target := strings.ReplaceAll(o.path, "{slug}", url.PathEscape(slug))
		target = strings.NewReplacer("{id}", hookID, "{delivery}", deliveryID).Replace(target)
		target = otherParam.ReplaceAllString(target, "placeholder")
		ct, body := exampleBody(o.op)
		authed := !(o.op.Security != nil && len(*o.op.Security) == 0)

		if authed {
			if r := call(o.method, target, "", nil, false); r.Status != http.StatusUnauthorized {
				t.Errorf("unauthenticated %s answered %d, want 401", name, r.Status)
			}
		}
		if r := call(o.method, target, ct, body, authed); r.Status >= 400 {
			t.Errorf("%s with the documented example answered %d: %s", name, r.Status, r.Body)
		}
		// Every operation on a link documents what an unknown slug answers.
		if strings.Contains(o.path, "{slug}") {
			if r := call(o.method, strings.ReplaceAll(o.path, "{slug}", "no-such-link"), ct, body, true); r.Status != http.StatusNotFound {
				t.Errorf("%s for an unknown slug answered %d, want 404", name, r.Status)
			}
		}
	}
	// The link is deleted now: every operation on it documents the 410 it answers.
	for _, o := range ops {
		if !strings.Contains(o.path, "{slug}") {
			continue
		}
		ct, body := exampleBody(o.op)
		if r := call(o.method, strings.ReplaceAll(o.path, "{slug}", url.PathEscape(slug)), ct, body, true); r.Status != http.StatusGone {
			t.Errorf("%s %s for a deleted link answered %d, want 410", o.method, o.path, r.Status)
		}
	}
}

// otherParam matches path parameters other than the slug, filled with a placeholder.
var otherParam = regexp.MustCompile(`\{[^}]+\}`)

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// The document's password bounds are the server's: the shortest and longest it allows
// are accepted, one byte beyond either is refused.
func TestOpenAPIPasswordBoundsAreTheServers(t *testing.T) {
	t.Parallel()
	p := spec(t).doc.Components.Schemas["LinkCreate"].Value.Properties["password"].Value
	if p.MaxLength == nil {
		t.Fatal("LinkCreate.password has no maxLength")
	}
	lo, hi := int(p.MinLength), int(*p.MaxLength)
	h := startHop(t, nil)
	for n, want := range map[int]int{lo - 1: http.StatusBadRequest, lo: http.StatusCreated, hi: http.StatusCreated, hi + 1: http.StatusBadRequest} {
		r := h.api(t, http.MethodPost, "/links", map[string]any{"url": "https://example.com/", "password": strings.Repeat("p", n)})
		if r.Status != want {
			t.Errorf("a password of %d bytes (document: %d to %d): %d %s, want %d", n, lo, hi, r.Status, r.Body, want)
		}
	}
}
