package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The tests here keep app/openapi.json honest in both directions: every route the code
// registers is documented, every documented operation exists, and what the running
// server answers matches the documented statuses, media types and schemas.

// apiDoc is the parsed OpenAPI document.
type apiDoc map[string]any

func loadAPIDoc(t testing.TB) apiDoc {
	t.Helper()
	var d apiDoc
	if err := json.Unmarshal(openAPIDoc, &d); err != nil {
		t.Fatalf("app/openapi.json is not JSON: %v", err)
	}
	return d
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// operation is one documented (method, path).
type operation struct {
	Method, Path string // upper-case method; OpenAPI path template
	Op           map[string]any
	Params       []any // path-level then operation-level parameters
}

func (d apiDoc) operations() []operation {
	var ops []operation
	paths, _ := d["paths"].(map[string]any)
	for p, item := range paths {
		item := item.(map[string]any)
		common, _ := item["parameters"].([]any)
		for _, m := range httpMethods {
			if op, ok := item[m].(map[string]any); ok {
				own, _ := op["parameters"].([]any)
				ops = append(ops, operation{Method: strings.ToUpper(m), Path: p, Op: op, Params: slices.Concat(common, own)})
			}
		}
	}
	slices.SortFunc(ops, func(a, b operation) int { return strings.Compare(a.Path+" "+a.Method, b.Path+" "+b.Method) })
	return ops
}

// resolve follows a local $ref ("#/components/...").
func (d apiDoc) resolve(v any) (map[string]any, error) {
	m, _ := v.(map[string]any)
	for range 10 {
		r, ok := m["$ref"].(string)
		if !ok {
			return m, nil
		}
		cur := any(map[string]any(d))
		for _, part := range strings.Split(strings.TrimPrefix(r, "#/"), "/") {
			mm, _ := cur.(map[string]any)
			if cur, ok = mm[part]; !ok {
				return nil, fmt.Errorf("unresolvable $ref %q", r)
			}
		}
		m, _ = cur.(map[string]any)
	}
	return m, nil
}

// registeredRoutes finds, in the source, every route that routes() registers: calls
// like x.GET("/path", ...) in routes itself, and in the Routes/Register methods of the
// modules it calls through the server struct (s.links.Routes(api)). Paths are string
// literals or package-level string constants joined with +; a group made in routes
// (api := e.Group("/p")) passes its prefix on to the module method it is given to.
// Reading the source rather than a running router keeps the test free of the wiring's
// dependencies; a registration it cannot read fails the test rather than being skipped.
func registeredRoutes(t *testing.T) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	found := map[string]string{} // "METHOD /path" -> position

	appFiles := parseDir(t, fset, ".")
	imports := map[string]string{}  // package name -> directory, for hop's modules
	fieldPkg := map[string]string{} // server field -> package name
	var routesFn *ast.FuncDecl
	for _, f := range appFiles {
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if rest, ok := strings.CutPrefix(path, "github.com/hop-dev/hop/modules/"); ok {
				imports[filepath.Base(rest)] = filepath.Join("..", "modules", rest)
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.TypeSpec:
				if st, ok := n.Type.(*ast.StructType); ok && n.Name.Name == "server" {
					for _, fld := range st.Fields.List {
						if pkg, ok := typePackage(fld.Type); ok {
							for _, name := range fld.Names {
								fieldPkg[name.Name] = pkg
							}
						}
					}
				}
			case *ast.FuncDecl:
				if n.Recv == nil && n.Name.Name == "routes" {
					routesFn = n
				}
			}
			return true
		})
	}
	if routesFn == nil {
		t.Fatal("no func routes in app/")
	}
	prefixes := collectRoutes(t, fset, routesFn.Body, stringConsts(appFiles), map[string]string{}, found)

	ast.Inspect(routesFn.Body, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || (sel.Sel.Name != "Routes" && sel.Sel.Name != "Register") {
			return true
		}
		recv, ok := sel.X.(*ast.SelectorExpr)
		if !ok {
			t.Errorf("%s: cannot tell which module %s belongs to; call it through the server struct", fset.Position(call.Pos()), sel.Sel.Name)
			return true
		}
		pkg := fieldPkg[recv.Sel.Name]
		dir, ok := imports[pkg]
		if !ok {
			t.Errorf("%s: routes calls %s on server.%s, which is not a hop module", fset.Position(call.Pos()), sel.Sel.Name, recv.Sel.Name)
			return true
		}
		prefix := ""
		if len(call.Args) > 0 {
			if id, ok := call.Args[0].(*ast.Ident); ok {
				prefix = prefixes[id.Name]
			}
		}
		files := parseDir(t, fset, dir)
		consts := stringConsts(files)
		seen := false
		for _, f := range files {
			for _, decl := range f.Decls {
				fn, ok := decl.(*ast.FuncDecl)
				if !ok || fn.Recv == nil || fn.Name.Name != sel.Sel.Name || fn.Body == nil {
					continue
				}
				seen = true
				// The first parameter is the group or Echo the routes go on.
				start := map[string]string{}
				if ps := fn.Type.Params.List; len(ps) > 0 && len(ps[0].Names) > 0 {
					start[ps[0].Names[0].Name] = prefix
				}
				collectRoutes(t, fset, fn.Body, consts, start, found)
			}
		}
		if !seen {
			t.Errorf("no method %s in %s", sel.Sel.Name, dir)
		}
		return true
	})
	return found
}

// collectRoutes adds the route registrations in body to found and returns the prefixes
// of the groups it creates; prefixes holds those of the variables it starts with.
func collectRoutes(t *testing.T, fset *token.FileSet, body *ast.BlockStmt, consts, prefixes, found map[string]string) map[string]string {
	t.Helper()
	methods := map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true, "OPTIONS": true}
	ast.Inspect(body, func(n ast.Node) bool {
		if as, ok := n.(*ast.AssignStmt); ok && len(as.Lhs) == 1 && len(as.Rhs) == 1 {
			if call, ok := as.Rhs[0].(*ast.CallExpr); ok {
				if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Group" && len(call.Args) > 0 {
					if id, ok := as.Lhs[0].(*ast.Ident); ok {
						p, ok := stringValue(call.Args[0], consts)
						if !ok {
							t.Errorf("%s: cannot read the group prefix", fset.Position(call.Pos()))
						}
						prefixes[id.Name] = prefixOf(sel.X, prefixes) + p
					}
				}
			}
		}
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) < 2 {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		method, args := sel.Sel.Name, call.Args
		switch {
		case method == "Add" && len(args) >= 3:
			m, ok := stringValue(args[0], consts)
			if !ok {
				return true
			}
			method, args = m, args[1:]
		case method == "Any" || method == "Match":
			t.Errorf("%s: %s registers many methods at once; register each (documented) method instead", fset.Position(call.Pos()), method)
			return true
		case !methods[method]:
			return true
		}
		p, ok := stringValue(args[0], consts)
		if !ok {
			t.Errorf("%s: cannot read the path of this %s registration; use a literal or a constant", fset.Position(call.Pos()), method)
			return true
		}
		full := prefixOf(sel.X, prefixes) + p
		if full == "" {
			full = "/"
		}
		found[method+" "+full] = fset.Position(call.Pos()).String()
		return true
	})
	return prefixes
}

func parseDir(t *testing.T, fset *token.FileSet, dir string) []*ast.File {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

// stringConsts returns the package-level string constants of files.
func stringConsts(files []*ast.File) map[string]string {
	consts := map[string]string{}
	for range 3 { // a constant may be defined from others declared later
		for _, f := range files {
			for _, decl := range f.Decls {
				gd, ok := decl.(*ast.GenDecl)
				if !ok || gd.Tok != token.CONST {
					continue
				}
				for _, spec := range gd.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, name := range vs.Names {
						if i < len(vs.Values) {
							if v, ok := stringValue(vs.Values[i], consts); ok {
								consts[name.Name] = v
							}
						}
					}
				}
			}
		}
	}
	return consts
}

// stringValue evaluates a string literal, a known constant, or a + of those.
func stringValue(e ast.Expr, consts map[string]string) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.Ident:
		s, ok := consts[e.Name]
		return s, ok
	case *ast.ParenExpr:
		return stringValue(e.X, consts)
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", false
		}
		l, ok1 := stringValue(e.X, consts)
		r, ok2 := stringValue(e.Y, consts)
		return l + r, ok1 && ok2
	}
	return "", false
}

// typePackage returns the package of a field type like *links.Handler.
func typePackage(e ast.Expr) (string, bool) {
	if st, ok := e.(*ast.StarExpr); ok {
		e = st.X
	}
	se, ok := e.(*ast.SelectorExpr)
	if !ok {
		return "", false
	}
	id, ok := se.X.(*ast.Ident)
	if !ok {
		return "", false
	}
	return id.Name, true
}

func prefixOf(recv ast.Expr, prefixes map[string]string) string {
	if id, ok := recv.(*ast.Ident); ok {
		return prefixes[id.Name]
	}
	return ""
}

var echoParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// openAPIPath turns an Echo route path into an OpenAPI path template: ":slug" becomes
// "{slug}" and a trailing wildcard "{path}".
func openAPIPath(echoPath string) string {
	p := echoParam.ReplaceAllString(echoPath, "{$1}")
	if strings.HasSuffix(p, "*") {
		p = strings.TrimSuffix(p, "*") + "{path}"
	}
	return p
}

// webUIPrefix is where the dashboard's HTML pages live; they are not API operations.
const webUIPrefix = "/dashboard"

func TestOpenAPIDocumentsEveryRegisteredRoute(t *testing.T) {
	t.Parallel()
	registered := registeredRoutes(t)
	if len(registered) < 10 {
		t.Fatalf("found only %d route registrations; is the source walk broken? %v", len(registered), registered)
	}
	documented := map[string]bool{}
	for _, op := range loadAPIDoc(t).operations() {
		documented[op.Method+" "+op.Path] = true
	}
	for route, where := range registered {
		method, p, _ := strings.Cut(route, " ")
		if p == webUIPrefix || strings.HasPrefix(p, webUIPrefix+"/") {
			continue // the dashboard's HTML pages are a UI, not part of the API
		}
		key := method + " " + openAPIPath(p)
		if !documented[key] {
			t.Errorf("%s is registered at %s but not documented in app/openapi.json (as %s)", route, where, key)
		}
		delete(documented, key)
	}
	for op := range documented {
		t.Errorf("%s is documented in app/openapi.json but no route registers it", op)
	}
}

func TestOpenAPIDocumentIsWellFormed(t *testing.T) {
	t.Parallel()
	d := loadAPIDoc(t)
	if d["openapi"] != "3.1.0" {
		t.Fatalf("openapi = %v, want 3.1.0", d["openapi"])
	}
	// Every $ref anywhere resolves.
	var walk func(v any, at string)
	walk = func(v any, at string) {
		switch v := v.(type) {
		case map[string]any:
			if _, ok := v["$ref"]; ok {
				if _, err := d.resolve(v); err != nil {
					t.Errorf("%s: %v", at, err)
				}
			}
			for k, c := range v {
				walk(c, at+"/"+k)
			}
		case []any:
			for i, c := range v {
				walk(c, at+"/"+strconv.Itoa(i))
			}
		}
	}
	walk(map[string]any(d), "#")

	ids := map[string]bool{}
	for _, op := range d.operations() {
		name := op.Method + " " + op.Path
		id, _ := op.Op["operationId"].(string)
		if id == "" || ids[id] {
			t.Errorf("%s: operationId %q missing or not unique", name, id)
		}
		ids[id] = true
		responses, _ := op.Op["responses"].(map[string]any)
		if len(responses) == 0 {
			t.Errorf("%s: no responses", name)
		}
		// Path parameters and the template agree.
		var declared []string
		for _, p := range op.Params {
			p, err := d.resolve(p)
			if err != nil {
				t.Fatal(err)
			}
			if p["in"] == "path" {
				declared = append(declared, p["name"].(string))
				if p["required"] != true {
					t.Errorf("%s: path parameter %v must be required", name, p["name"])
				}
			}
		}
		var inPath []string
		for _, m := range regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(op.Path, -1) {
			inPath = append(inPath, m[1])
		}
		slices.Sort(declared)
		slices.Sort(inPath)
		if !slices.Equal(declared, inPath) {
			t.Errorf("%s: path parameters %v declared, %v in the template", name, declared, inPath)
		}
		// Management operations use the global API-key security and document 401 and
		// 429; public ones opt out explicitly.
		sec, hasSec := op.Op["security"].([]any)
		public := hasSec && len(sec) == 0
		if !public {
			for _, code := range []string{"401", "429"} {
				if _, ok := responses[code]; !ok {
					t.Errorf("%s: an authenticated operation must document %s", name, code)
				}
			}
		}
		// Errors are problem documents, except pages meant for browsers and the health
		// report, whose 503 is the usual health document.
		for code, r := range responses {
			if code[0] != '4' && code[0] != '5' || op.Path == "/health" {
				continue
			}
			r, _ := d.resolve(r)
			content, _ := r["content"].(map[string]any)
			if content["application/problem+json"] == nil && content["text/html"] == nil {
				t.Errorf("%s: response %s is not application/problem+json", name, code)
			}
		}
	}
}

// exampleBody returns the documented JSON example of op's request body, if any.
func exampleBody(d apiDoc, op operation) (contentType string, body []byte) {
	rb, err := d.resolve(op.Op["requestBody"])
	if err != nil || rb == nil {
		return "", nil
	}
	content, _ := rb["content"].(map[string]any)
	for ct, mt := range content {
		mt := mt.(map[string]any)
		switch ct {
		case "application/json":
			b, _ := json.Marshal(mt["example"])
			return ct, b
		case "application/x-www-form-urlencoded":
			return ct, []byte("password=not-needed")
		}
	}
	return "", nil
}

// TestOpenAPIMatchesRunningServer calls every documented operation on a running hop with
// its documented example and checks that the answer is documented: status, media type
// and, for JSON, the schema (strictly: undocumented fields fail). Unauthenticated calls
// to management operations must answer the documented 401 problem.
func TestOpenAPIMatchesRunningServer(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	d := loadAPIDoc(t)

	served := h.do(t, http.MethodGet, "/openapi.json", nil)
	mustStatus(t, served, http.StatusOK)
	if !bytes.Equal(served.Body, openAPIDoc) {
		t.Fatal("/openapi.json does not serve app/openapi.json")
	}

	const slug = "oapi-Link_1"
	h.createLink(t, map[string]any{"url": "https://example.com/openapi", "slug": slug, "tags": []string{"docs"}})
	// Operations on a domain name it by the placeholder below.
	mustStatus(t, h.api(t, http.MethodPost, "/domains", map[string]any{"host": "placeholder"}), http.StatusCreated)

	ops := d.operations()
	// Deleting goes last: the other operations need the link.
	slices.SortStableFunc(ops, func(a, b operation) int {
		return boolCmp(a.Method == http.MethodDelete, b.Method == http.MethodDelete)
	})
	for _, op := range ops {
		name := op.Method + " " + op.Path
		target := strings.ReplaceAll(op.Path, "{slug}", url.PathEscape(slug))
		target = otherParam.ReplaceAllString(target, "placeholder")
		ct, body := exampleBody(d, op)
		sec, hasSec := op.Op["security"].([]any)
		authed := !(hasSec && len(sec) == 0)

		if authed {
			r := h.do(t, op.Method, target, nil)
			checkDocumented(t, d, op, r, "unauthenticated "+name)
			if r.Status != http.StatusUnauthorized {
				t.Errorf("unauthenticated %s answered %d, want 401", name, r.Status)
			}
		}

		req, err := http.NewRequest(op.Method, h.URL+target, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		if authed {
			req.Header.Set("X-Api-Key", h.Key)
		}
		r := send(t, req)
		checkDocumented(t, d, op, r, name)
		if r.Status >= 400 {
			t.Errorf("%s with the documented example answered %d: %s", name, r.Status, r.Body)
		}

		// Every operation on a link documents what an unknown slug answers.
		if strings.Contains(op.Path, "{slug}") {
			req, _ := http.NewRequest(op.Method, h.URL+strings.ReplaceAll(op.Path, "{slug}", "no-such-link"), bytes.NewReader(body))
			if ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			req.Header.Set("X-Api-Key", h.Key)
			r := send(t, req)
			checkDocumented(t, d, op, r, name+" (unknown slug)")
			if r.Status != http.StatusNotFound {
				t.Errorf("%s for an unknown slug answered %d, want 404", name, r.Status)
			}
		}
	}

	// The link is deleted now: every operation on it documents the 410 it answers.
	for _, op := range ops {
		if !strings.Contains(op.Path, "{slug}") {
			continue
		}
		ct, body := exampleBody(d, op)
		req, _ := http.NewRequest(op.Method, h.URL+strings.ReplaceAll(op.Path, "{slug}", url.PathEscape(slug)), bytes.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		req.Header.Set("X-Api-Key", h.Key)
		r := send(t, req)
		checkDocumented(t, d, op, r, op.Method+" "+op.Path+" (deleted link)")
		if r.Status != http.StatusGone {
			t.Errorf("%s %s for a deleted link answered %d, want 410", op.Method, op.Path, r.Status)
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

func send(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b.Bytes()}
}

// checkDocumented checks that r is a documented response of op.
func checkDocumented(t *testing.T, d apiDoc, op operation, r response, name string) {
	t.Helper()
	responses, _ := op.Op["responses"].(map[string]any)
	spec, ok := responses[strconv.Itoa(r.Status)]
	if !ok {
		spec, ok = responses["default"]
	}
	if !ok {
		t.Errorf("%s answered %d, which is not documented: %s", name, r.Status, r.Body)
		return
	}
	rs, err := d.resolve(spec)
	if err != nil {
		t.Fatal(err)
	}
	// Echo's own 404/405 mean the route itself is missing, whatever the document says.
	if (r.Status == http.StatusNotFound || r.Status == http.StatusMethodNotAllowed) && bytes.Contains(r.Body, []byte(`"type":"about:blank"`)) {
		t.Errorf("%s: no route answers it (%d from the router): %s", name, r.Status, r.Body)
		return
	}
	content, _ := rs["content"].(map[string]any)
	if len(content) == 0 {
		if len(r.Body) > 0 && op.Method != http.MethodHead {
			t.Errorf("%s answered %d with a body, but none is documented: %s", name, r.Status, r.Body)
		}
		return
	}
	if op.Method == http.MethodHead {
		return
	}
	ct := r.Header.Get("Content-Type")
	for mt, media := range content {
		if !strings.HasPrefix(ct, mt) {
			continue
		}
		if mt != "application/json" && mt != "application/problem+json" {
			return
		}
		var v any
		if err := json.Unmarshal(r.Body, &v); err != nil {
			t.Errorf("%s: %d body is not JSON: %v", name, r.Status, err)
			return
		}
		schema := media.(map[string]any)["schema"]
		for _, e := range validate(d, schema, v, "$") {
			t.Errorf("%s: %d body does not match the documented schema: %s\nbody: %s", name, r.Status, e, r.Body)
		}
		return
	}
	t.Errorf("%s: %d answered %q, documented %v", name, r.Status, ct, slices.Collect(mapKeys(content)))
}

func mapKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// validate checks v against the JSON Schema subset the document uses. It is strict
// where JSON Schema is lenient: an object property the schema does not declare is an
// error unless the schema has additionalProperties, so a field added to a handler
// without documenting it fails the test.
func validate(d apiDoc, schemaV any, v any, at string) []string {
	s, err := d.resolve(schemaV)
	if err != nil {
		return []string{at + ": " + err.Error()}
	}
	if s == nil {
		return nil
	}
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, at+": "+fmt.Sprintf(format, args...)) }

	if types := schemaTypes(s["type"]); len(types) > 0 && !slices.Contains(types, jsonType(v)) {
		if !(jsonType(v) == "integer" && slices.Contains(types, "number")) {
			fail("%s, want %v", jsonType(v), types)
			return errs
		}
	}
	if enum, ok := s["enum"].([]any); ok && !slices.ContainsFunc(enum, func(e any) bool { return fmt.Sprint(e) == fmt.Sprint(v) }) {
		fail("%v is not one of %v", v, enum)
	}
	if c, ok := s["const"]; ok && fmt.Sprint(c) != fmt.Sprint(v) {
		fail("%v, want %v", v, c)
	}
	switch v := v.(type) {
	case string:
		switch s["format"] {
		case "date-time":
			if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
				fail("%q is not an RFC 3339 date-time", v)
			}
		case "date":
			if _, err := time.Parse(time.DateOnly, v); err != nil {
				fail("%q is not a date", v)
			}
		case "uri":
			if u, err := url.Parse(v); err != nil || u.Scheme == "" {
				fail("%q is not an absolute URI", v)
			}
		}
	case float64:
		if minimum, ok := s["minimum"].(float64); ok && v < minimum {
			fail("%v < minimum %v", v, minimum)
		}
		if maximum, ok := s["maximum"].(float64); ok && v > maximum {
			fail("%v > maximum %v", v, maximum)
		}
	case []any:
		if n, ok := s["minItems"].(float64); ok && float64(len(v)) < n {
			fail("%d items < minItems %v", len(v), n)
		}
		if n, ok := s["maxItems"].(float64); ok && float64(len(v)) > n {
			fail("%d items > maxItems %v", len(v), n)
		}
		if items, ok := s["items"]; ok {
			for i, e := range v {
				errs = append(errs, validate(d, items, e, fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		required, _ := s["required"].([]any)
		for _, r := range required {
			if _, ok := v[r.(string)]; !ok {
				fail("required property %q is missing", r)
			}
		}
		for k, e := range v {
			if ps, ok := props[k]; ok {
				errs = append(errs, validate(d, ps, e, at+"."+k)...)
				continue
			}
			switch ap := s["additionalProperties"].(type) {
			case map[string]any:
				errs = append(errs, validate(d, ap, e, at+"."+k)...)
			case bool:
				if !ap {
					fail("property %q is not allowed", k)
				}
			default:
				if props != nil {
					fail("property %q is not documented", k)
				}
			}
		}
	}
	return errs
}

func schemaTypes(t any) []string {
	switch t := t.(type) {
	case string:
		return []string{t}
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			out = append(out, e.(string))
		}
		return out
	}
	return nil
}

func jsonType(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case float64:
		if v == math.Trunc(v) {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}
