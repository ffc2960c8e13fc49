package app

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"
	"github.com/sethvargo/go-envconfig"
	"go.yaml.in/yaml/v3"

	"github.com/hop-dev/hop/modules/apikey"
	"github.com/hop-dev/hop/modules/ratelimit"
)

// DevSlugSecret is the slug secret earlier versions used when none was configured,
// which every such hop shares; hop warns when it is configured.
const DevSlugSecret = "hop-dev-secret-change-me"

// Config is every setting of hop. Values come from the defaults below, then config.yaml,
// then environment variables, then Validate.
type Config struct {
	Addr              string        `yaml:"addr" env:"HOP_ADDR"`
	DatabaseURL       string        `yaml:"database_url" env:"DATABASE_URL"`
	PGBinaries        string        `yaml:"pg_binaries" env:"HOP_PG_BINARIES"`
	CreateDatabase    bool          `yaml:"create_database" env:"HOP_CREATE_DATABASE"`
	RedisURL          string        `yaml:"redis_url" env:"REDIS_URL"`
	RedisPrefix       string        `yaml:"redis_prefix" env:"HOP_REDIS_PREFIX"`
	DataDir           string        `yaml:"data_dir" env:"HOP_DATA_DIR"`
	BaseURL           string        `yaml:"base_url" env:"HOP_BASE_URL"`
	SlugSecret        string        `yaml:"slug_secret" env:"HOP_SLUG_SECRET"`
	SlugMinLength     int           `yaml:"slug_min_length" env:"HOP_SLUG_MIN_LENGTH"`
	APIKey            string        `yaml:"api_key" env:"HOP_API_KEY"`
	TrustedProxies    []string      `yaml:"trusted_proxies" env:"HOP_TRUSTED_PROXIES"`
	RateLimitRedirect string        `yaml:"rate_limit_redirect" env:"HOP_RATE_LIMIT_REDIRECT"`
	RateLimitAPI      string        `yaml:"rate_limit_api" env:"HOP_RATE_LIMIT_API"`
	RateLimitTimeout  time.Duration `yaml:"rate_limit_timeout" env:"HOP_RATE_LIMIT_TIMEOUT"`
	AggregateInterval time.Duration `yaml:"aggregate_interval" env:"HOP_AGGREGATE_INTERVAL"`
	RetentionDays     int           `yaml:"retention_days" env:"HOP_RETENTION_DAYS"`
	GeoIPDB           string        `yaml:"geoip_db" env:"HOP_GEOIP_DB"`
	IngestBatchSize   int           `yaml:"ingest_batch_size" env:"HOP_INGEST_BATCH_SIZE"`
	SpoolMaxBytes     int64         `yaml:"spool_max_bytes" env:"HOP_SPOOL_MAX_BYTES"`
	ConsumerName      string        `yaml:"consumer_name" env:"HOP_CONSUMER_NAME"`
	CORSOrigins       []string      `yaml:"cors_origins" env:"HOP_CORS_ORIGINS"`
	MaxConnections    int           `yaml:"max_connections" env:"HOP_MAX_CONNECTIONS"`
	MetricsToken      string        `yaml:"metrics_token" env:"HOP_METRICS_TOKEN"`
	RootRedirect      string        `yaml:"root_redirect" env:"HOP_ROOT_REDIRECT"`
	NotFoundRedirect  string        `yaml:"not_found_redirect" env:"HOP_NOT_FOUND_REDIRECT"`
	ExpiredRedirect   string        `yaml:"expired_redirect" env:"HOP_EXPIRED_REDIRECT"`
	RobotsAllow       bool          `yaml:"robots_allow" env:"HOP_ROBOTS_ALLOW"`
	ShutdownTimeout   time.Duration `yaml:"shutdown_timeout" env:"HOP_SHUTDOWN_TIMEOUT"`
	LogFormat         string        `yaml:"log_format" env:"HOP_LOG_FORMAT"`
	LogLevel          string        `yaml:"log_level" env:"HOP_LOG_LEVEL"`
	// WebhookAllowPrivate lets webhook URLs reach loopback, private and link-local
	// addresses (tests, private networks); off, they are refused at creation and dial.
	WebhookAllowPrivate bool `yaml:"webhook_allow_private" env:"HOP_WEBHOOK_ALLOW_PRIVATE"`

	trusted []netip.Prefix
	data    *dataDir // the data directory and embedded PostgreSQL of this run; set by Run
}

// defaultMaxConnections caps open client connections for a 2 GiB machine: an idle
// keep-alive connection holds about 15 KiB, one sending a full body about 64 KiB more,
// so the cap keeps connections within a few hundred MiB at worst.
const defaultMaxConnections = 4096

// defaultConfig holds the defaults documented in config.yaml.
func defaultConfig() Config {
	return Config{
		Addr:              ":8080",
		CreateDatabase:    true,
		RedisPrefix:       "hop:",
		DataDir:           "./hop-data",
		BaseURL:           "http://localhost:8080",
		SlugMinLength:     6,
		RateLimitRedirect: "10-S",
		RateLimitAPI:      "600-M",
		RateLimitTimeout:  20 * time.Millisecond,
		AggregateInterval: 2 * time.Second,
		IngestBatchSize:   5000,
		SpoolMaxBytes:     1 << 30,
		ShutdownTimeout:   10 * time.Second,
		MaxConnections:    defaultMaxConnections,
		LogLevel:          "info",
	}
}

// loadConfig reads path (optional unless required) then the environment through getenv
// (an empty value counts as unset), and validates.
func loadConfig(path string, required bool, getenv func(string) string) (Config, error) {
	cfg := defaultConfig()
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) { // io.EOF: empty file
			return cfg, fileError(path, b, err)
		}
	case errors.Is(err, os.ErrNotExist) && !required:
	case required:
		// The path came from --config or HOP_CONFIG; say so, since neither is in the
		// message of a file that cannot be opened.
		return cfg, fmt.Errorf("config file (--config or HOP_CONFIG): %w", err)
	default:
		return cfg, fmt.Errorf("config file (the default, in the working directory): %w", err)
	}
	env := envconfig.LookuperFunc(func(k string) (string, bool) {
		v := getenv(k)
		return v, v != ""
	})
	if err := envconfig.ProcessWith(context.Background(), &envconfig.Config{Target: &cfg, Lookuper: env, DefaultOverwrite: true}); err != nil {
		return cfg, envError(err, getenv)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// setting finds the field of Config whose YAML key (or, with env, environment
// variable) is name.
func setting(name string, env bool) (reflect.StructField, bool) {
	for _, f := range reflect.VisibleFields(reflect.TypeFor[Config]()) {
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if env {
			tag, _, _ = strings.Cut(f.Tag.Get("env"), ",")
		}
		if tag != "" && tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// badValue says what a setting of field f's type must look like and what it got (a
// quoted value, or what kind of thing), naming the setting as Validate does.
func badValue(f reflect.StructField, got string) error {
	yamlKey, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	envKey, _, _ := strings.Cut(f.Tag.Get("env"), ",")
	want := "a " + f.Type.String()
	switch {
	case f.Type == reflect.TypeFor[time.Duration]():
		want = "a duration like 500ms, 2s or 1m"
	case f.Type.Kind() == reflect.Bool:
		want = "true or false"
	case f.Type.Kind() == reflect.Int, f.Type.Kind() == reflect.Int64:
		want = "a whole number"
	case f.Type.Kind() == reflect.Slice:
		want = "a list (comma-separated in the environment)"
	case f.Type.Kind() == reflect.String:
		want = "a string"
	}
	return fmt.Errorf("invalid setting %s (%s): must be %s, got %s", yamlKey, envKey, want, got)
}

// envError names the setting and value an environment variable failed to set:
// envconfig's errors name the Go field ("SlugMinLength: strconv.ParseInt: ...").
func envError(err error, getenv func(string) string) error {
	field, _, _ := strings.Cut(err.Error(), ":")
	if f, ok := reflect.TypeFor[Config]().FieldByName(field); ok {
		env, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		return badValue(f, strconv.Quote(getenv(env)))
	}
	return fmt.Errorf("environment: %w", err)
}

// fileError names the line and setting of the first value in the config file that
// does not fit its setting, or the first unknown key; yaml's own errors name neither
// ("line 3: cannot unmarshal !!str `5s x` into time.Duration").
func fileError(path string, b []byte, err error) error {
	var terr *yaml.TypeError
	var doc yaml.Node
	if !errors.As(err, &terr) || yaml.Unmarshal(b, &doc) != nil || len(doc.Content) != 1 {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if doc.Content[0].Kind != yaml.MappingNode {
		return fmt.Errorf("config file %s: want one `setting: value` per line, as in config.yaml", path)
	}
	m := doc.Content[0].Content
	for i := 0; i+1 < len(m); i += 2 {
		key, value := m[i], m[i+1]
		f, ok := setting(key.Value, false)
		if !ok {
			return fmt.Errorf("config file %s line %d: unknown setting %q (config.yaml lists every setting)", path, key.Line, key.Value)
		}
		scratch := defaultConfig()
		if value.Decode(reflect.ValueOf(&scratch).Elem().FieldByIndex(f.Index).Addr().Interface()) != nil {
			got := strconv.Quote(value.Value)
			if value.Kind != yaml.ScalarNode {
				got = "a list or mapping"
			}
			return fmt.Errorf("config file %s line %d: %w", path, value.Line, badValue(f, got))
		}
	}
	return fmt.Errorf("config file %s: %s", path, strings.Join(terr.Errors, "; "))
}

// Validate checks every setting and names the first bad one.
func (c *Config) Validate() error {
	bad := func(setting, format string, args ...any) error {
		return fmt.Errorf("invalid setting %s: %s", setting, fmt.Sprintf(format, args...))
	}
	if c.Addr == "" {
		return bad("addr (HOP_ADDR)", "must not be empty, e.g. :8080")
	}
	if _, port, err := net.SplitHostPort(c.Addr); err != nil {
		return bad("addr (HOP_ADDR)", "must be HOST:PORT or :PORT, e.g. :8080 or 127.0.0.1:8080, got %q", c.Addr)
	} else if _, err := net.LookupPort("tcp", port); err != nil {
		return bad("addr (HOP_ADDR)", "%q has no valid port (0 to 65535), e.g. :8080", c.Addr)
	}
	if c.DatabaseURL != "" {
		if _, err := pgxpool.ParseConfig(c.DatabaseURL); err != nil {
			return bad("database_url (DATABASE_URL)", "not a PostgreSQL URL like postgres://user@host:5432/hop (or empty for the embedded PostgreSQL)")
		}
	}
	if strings.TrimSpace(c.DataDir) == "" {
		return bad("data_dir (HOP_DATA_DIR)", "must not be empty, e.g. ./hop-data")
	}
	if c.RedisURL != "" {
		if _, err := rueidis.ParseURL(c.RedisURL); err != nil {
			return bad("redis_url (REDIS_URL)", "%v (use redis://host:6379/0, or an empty value to run without Redis)", err)
		}
	}
	if c.RedisPrefix == "" || strings.ContainsAny(c.RedisPrefix, " \t\r\n") {
		return bad("redis_prefix (HOP_REDIS_PREFIX)", "must be non-empty without whitespace")
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return bad("base_url (HOP_BASE_URL)", "must be an origin like https://hop.example, got %q", c.BaseURL)
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if c.SlugMinLength < 1 || c.SlugMinLength > 32 {
		return bad("slug_min_length (HOP_SLUG_MIN_LENGTH)", "must be 1 to 32, got %d", c.SlugMinLength)
	}
	if c.APIKey != "" && len(c.APIKey) < apikey.MinLength {
		return bad("api_key (HOP_API_KEY)", "must be at least %d characters (it is %d); a short key can be guessed. Generate one with: openssl rand -base64 32",
			apikey.MinLength, len(c.APIKey))
	}
	if c.MaxConnections < 1 {
		return bad("max_connections (HOP_MAX_CONNECTIONS)", "must be at least 1, got %d", c.MaxConnections)
	}
	c.trusted = c.trusted[:0]
	for _, s := range c.TrustedProxies {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return bad("trusted_proxies (HOP_TRUSTED_PROXIES)", "%q is not a CIDR like 10.0.0.0/8 or an IP", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		c.trusted = append(c.trusted, p.Masked())
	}
	origins := c.CORSOrigins[:0]
	for _, o := range c.CORSOrigins {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		norm, err := corsOrigin(o)
		if err != nil {
			return bad("cors_origins (HOP_CORS_ORIGINS)", "%v", err)
		}
		origins = append(origins, norm)
	}
	c.CORSOrigins = origins
	if _, err := ratelimit.ParseRate(c.RateLimitRedirect); err != nil {
		return bad("rate_limit_redirect (HOP_RATE_LIMIT_REDIRECT)", "%v", err)
	}
	if _, err := ratelimit.ParseRate(c.RateLimitAPI); err != nil {
		return bad("rate_limit_api (HOP_RATE_LIMIT_API)", "%v", err)
	}
	if c.RateLimitTimeout < time.Millisecond || c.RateLimitTimeout > 5*time.Second {
		return bad("rate_limit_timeout (HOP_RATE_LIMIT_TIMEOUT)", "must be between 1ms and 5s, got %s", c.RateLimitTimeout)
	}
	if c.AggregateInterval < 100*time.Millisecond || c.AggregateInterval > time.Hour {
		return bad("aggregate_interval (HOP_AGGREGATE_INTERVAL)", "must be between 100ms and 1h, got %s", c.AggregateInterval)
	}
	if c.RetentionDays < 0 {
		return bad("retention_days (HOP_RETENTION_DAYS)", "must be 0 (keep forever) or a number of days, got %d", c.RetentionDays)
	}
	if c.GeoIPDB != "" {
		if _, err := os.Stat(c.GeoIPDB); err != nil {
			return bad("geoip_db (HOP_GEOIP_DB)", "%v", err)
		}
	}
	if c.IngestBatchSize < 1 || c.IngestBatchSize > 100_000 {
		return bad("ingest_batch_size (HOP_INGEST_BATCH_SIZE)", "must be 1 to 100000, got %d", c.IngestBatchSize)
	}
	if c.SpoolMaxBytes < 1<<20 {
		return bad("spool_max_bytes (HOP_SPOOL_MAX_BYTES)", "must be at least 1048576 (1 MiB), got %d", c.SpoolMaxBytes)
	}
	for _, f := range []struct {
		setting string
		value   *string
	}{
		{"root_redirect (HOP_ROOT_REDIRECT)", &c.RootRedirect},
		{"not_found_redirect (HOP_NOT_FOUND_REDIRECT)", &c.NotFoundRedirect},
		{"expired_redirect (HOP_EXPIRED_REDIRECT)", &c.ExpiredRedirect},
	} {
		*f.value = strings.TrimSpace(*f.value)
		if *f.value == "" {
			continue
		}
		u, err := url.Parse(*f.value)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(*f.value, " \t\r\n") {
			return bad(f.setting, "must be an absolute http(s) URL like https://example.com/, or empty for hop's own page; got %q", *f.value)
		}
	}
	if c.ShutdownTimeout < time.Second {
		return bad("shutdown_timeout (HOP_SHUTDOWN_TIMEOUT)", "must be at least 1s, got %s", c.ShutdownTimeout)
	}
	switch c.LogFormat {
	case "", "text", "json":
	default:
		return bad("log_format (HOP_LOG_FORMAT)", "must be text or json (or empty: text on a terminal, else json), got %q", c.LogFormat)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return bad("log_level (HOP_LOG_LEVEL)", "must be debug, info, warn or error, got %q", c.LogLevel)
	}
	return nil
}

// corsOrigin checks one allowed CORS origin and returns it as browsers send it in
// Origin: lower case, no path. The CORS middleware compares origins as strings, so
// "https://app.example/" or "https://App.example" would silently never match; they are
// refused or lowered here instead. Of its wildcards hop takes * (https://*.example.com),
// not ?, and never the origin "null" that sandboxed pages send.
func corsOrigin(o string) (string, error) {
	if o == "*" {
		return o, nil
	}
	scheme, host, ok := strings.Cut(o, "://")
	valid := ok && scheme != "" && host != "" && !strings.ContainsAny(host, "/?#@ \t\r\n")
	for i, r := range scheme {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if !letter && (i == 0 || !(r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.')) {
			valid = false
		}
	}
	if !valid {
		return "", fmt.Errorf("%q is not an origin: want SCHEME://HOST[:PORT] with no path, such as https://app.example or https://*.example.com, or *", o)
	}
	return strings.ToLower(o), nil
}

// LogValue masks secrets when the config is logged. Durations are logged as written in
// config.yaml ("2s"): slog.Duration would be nanoseconds in JSON.
func (c Config) LogValue() slog.Value {
	mask := func(s string) string {
		if s == "" {
			return ""
		}
		return "***"
	}
	return slog.GroupValue(
		slog.String("addr", c.Addr),
		slog.String("database_url", cmp.Or(redactURL(c.DatabaseURL), "(embedded)")),
		slog.String("pg_binaries", c.PGBinaries),
		slog.Bool("create_database", c.CreateDatabase),
		slog.String("redis_url", redactURL(c.RedisURL)),
		slog.String("redis_prefix", c.RedisPrefix),
		slog.String("data_dir", c.DataDir),
		slog.String("base_url", c.BaseURL),
		slog.String("slug_secret", mask(c.SlugSecret)),
		slog.Int("slug_min_length", c.SlugMinLength),
		slog.String("api_key", mask(c.APIKey)),
		slog.Any("trusted_proxies", c.TrustedProxies),
		slog.String("rate_limit_redirect", c.RateLimitRedirect),
		slog.String("rate_limit_api", c.RateLimitAPI),
		slog.String("rate_limit_timeout", c.RateLimitTimeout.String()),
		slog.String("aggregate_interval", c.AggregateInterval.String()),
		slog.Int("retention_days", c.RetentionDays),
		slog.String("geoip_db", c.GeoIPDB),
		slog.Int("ingest_batch_size", c.IngestBatchSize),
		slog.Int64("spool_max_bytes", c.SpoolMaxBytes),
		slog.String("consumer_name", c.ConsumerName),
		slog.Any("cors_origins", c.CORSOrigins),
		slog.Int("max_connections", c.MaxConnections),
		slog.String("metrics_token", mask(c.MetricsToken)),
		slog.String("root_redirect", c.RootRedirect),
		slog.String("not_found_redirect", c.NotFoundRedirect),
		slog.String("expired_redirect", c.ExpiredRedirect),
		slog.Bool("robots_allow", c.RobotsAllow),
		slog.Bool("webhook_allow_private", c.WebhookAllowPrivate),
		slog.String("shutdown_timeout", c.ShutdownTimeout.String()),
		slog.String("log_format", c.LogFormat),
		slog.String("log_level", c.LogLevel),
	)
}

func redactURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable)"
	}
	return u.Redacted()
}
