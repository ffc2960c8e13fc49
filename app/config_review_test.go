package app

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// envOf is a getenv that knows only the given NAME=VALUE pairs.
func envOf(pairs ...string) func(string) string {
	return func(name string) string {
		for _, p := range pairs {
			if k, v, _ := strings.Cut(p, "="); k == name {
				return v
			}
		}
		return ""
	}
}

// The config.yaml shipped with hop (and copied into the image) lists every setting,
// with its variable, and its values are the built-in defaults: an operator who edits
// it starts from what hop does without it.
func TestConfigShippedFileIsTheDefaults(t *testing.T) {
	t.Parallel()
	const path = "../config.yaml"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for i, n := range doc.Content[0].Content {
		if i%2 == 0 {
			keys = append(keys, n.Value)
		}
	}
	for _, f := range reflect.VisibleFields(reflect.TypeFor[Config]()) {
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		env, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if key == "" {
			continue
		}
		if !slices.Contains(keys, key) {
			t.Errorf("config.yaml does not list %s", key)
		}
		if !bytes.Contains(b, []byte("["+env+"]")) {
			t.Errorf("config.yaml does not name [%s] for %s", env, key)
		}
	}

	got, err := loadConfig(path, true, envOf())
	if err != nil {
		t.Fatal(err)
	}
	want := defaultConfig()
	if err := want.Validate(); err != nil {
		t.Fatal(err)
	}
	// An empty list in the file and no list at all mean the same.
	for _, c := range []*Config{&got, &want} {
		c.TrustedProxies, c.CORSOrigins, c.trusted = nil, nil, nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("config.yaml differs from the built-in defaults:\nfile     %+v\ndefaults %+v", got, want)
	}
}

// Allowed CORS origins are compared as strings with the browser's Origin header, so
// an entry with a path or a trailing slash would silently never match: it is refused,
// naming the setting, and entries are trimmed and lowered as browsers send them.
func TestConfigCORSOrigins(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		env  string
		want []string
		err  string
	}{
		{env: "https://app.example", want: []string{"https://app.example"}},
		{env: " https://App.Example:8443 , *,https://*.example.com,", want: []string{"https://app.example:8443", "*", "https://*.example.com"}},
		{env: "https://app.example/", err: `invalid setting cors_origins (HOP_CORS_ORIGINS): "https://app.example/" is not an origin`},
		{env: "https://app.example/path", err: `"https://app.example/path" is not an origin`},
		{env: "app.example", err: `invalid setting cors_origins (HOP_CORS_ORIGINS): "app.example" is not an origin`},
		{env: "://app.example", err: `"://app.example" is not an origin`},
	} {
		cfg, err := loadConfig("", false, envOf("HOP_CORS_ORIGINS="+c.env))
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("HOP_CORS_ORIGINS=%q: %v, want %s", c.env, err, c.err)
			}
		case err != nil:
			t.Errorf("HOP_CORS_ORIGINS=%q: %v", c.env, err)
		case !slices.Equal(cfg.CORSOrigins, c.want):
			t.Errorf("HOP_CORS_ORIGINS=%q: origins %q, want %q", c.env, cfg.CORSOrigins, c.want)
		}
	}
}

// Every refusal names the setting and the value it got, so an operator sees which of
// several sources (file, environment, compose file) the value came from.
func TestConfigRefusalsShowTheValue(t *testing.T) {
	t.Parallel()
	for env, want := range map[string]string{
		"HOP_RETENTION_DAYS=-1":       "invalid setting retention_days (HOP_RETENTION_DAYS): must be 0 (keep forever) or a number of days, got -1",
		"HOP_INGEST_BATCH_SIZE=0":     "invalid setting ingest_batch_size (HOP_INGEST_BATCH_SIZE): must be 1 to 100000, got 0",
		"HOP_SHUTDOWN_TIMEOUT=500ms":  "invalid setting shutdown_timeout (HOP_SHUTDOWN_TIMEOUT): must be at least 1s, got 500ms",
		"HOP_LOG_FORMAT=xml":          `invalid setting log_format (HOP_LOG_FORMAT): must be text or json (or empty: text on a terminal, else json), got "xml"`,
		"HOP_LOG_LEVEL=verbose":       `invalid setting log_level (HOP_LOG_LEVEL): must be debug, info, warn or error, got "verbose"`,
		"HOP_MAX_CONNECTIONS=-1":      "invalid setting max_connections (HOP_MAX_CONNECTIONS): must be at least 1, got -1",
		"HOP_RATE_LIMIT_TIMEOUT=10s":  "invalid setting rate_limit_timeout (HOP_RATE_LIMIT_TIMEOUT): must be between 1ms and 5s, got 10s",
		"HOP_WEBHOOK_ALLOW_PRIVATE=2": `invalid setting webhook_allow_private (HOP_WEBHOOK_ALLOW_PRIVATE): must be true or false, got "2"`,
	} {
		_, err := loadConfig("", false, envOf(env))
		if err == nil || err.Error() != want {
			t.Errorf("%s: %v\nwant %s", env, err, want)
		}
	}
}

// A config file named by --config or HOP_CONFIG that cannot be read says where the
// path came from.
func TestConfigMissingFileNamesItsSource(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := loadConfig(path, true, envOf())
	if err == nil || !strings.Contains(err.Error(), "--config or HOP_CONFIG") || !strings.Contains(err.Error(), path) {
		t.Fatalf("missing config file: %v", err)
	}
	// The default file, present but unreadable (a directory here), blames neither.
	_, err = loadConfig(t.TempDir(), false, envOf())
	if err == nil || strings.Contains(err.Error(), "HOP_CONFIG") || !strings.Contains(err.Error(), "the default") {
		t.Fatalf("unreadable default config file: %v", err)
	}
}

// The configuration logged at start shows durations as config.yaml writes them, every
// setting, and no secret.
func TestConfigLoggedAsWritten(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig("", false, envOf("HOP_API_KEY=k0123456789abcdef0123456789abcdef", "HOP_METRICS_TOKEN=metrics-secret",
		"DATABASE_URL=postgres://hop:pg-secret@db.example/hop", "HOP_WEBHOOK_ALLOW_PRIVATE=true"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("starting hop", "config", cfg)
	for _, secret := range []string{"k0123456789", "metrics-secret", "pg-secret"} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("logged config shows a secret: %s", buf.String())
		}
	}
	var line struct{ Config map[string]any }
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]any{"aggregate_interval": "2s", "rate_limit_timeout": "20ms", "shutdown_timeout": "10s", "webhook_allow_private": true} {
		if got := line.Config[key]; got != want {
			t.Errorf("logged %s = %#v, want %#v", key, got, want)
		}
	}
	for _, f := range reflect.VisibleFields(reflect.TypeFor[Config]()) {
		if key, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); key != "" {
			if _, ok := line.Config[key]; !ok {
				t.Errorf("logged config lacks %s", key)
			}
		}
	}
}
