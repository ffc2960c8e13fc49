package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/hop-dev/hop/migrations"
	"github.com/hop-dev/hop/modules/apikey"
	"github.com/hop-dev/hop/modules/domains"
)

// migrateCmd runs `hop migrate up|down|status`.
func migrateCmd(ctx context.Context, cfg Config, logger *slog.Logger, args []string, stdout io.Writer) error {
	const use = "usage: hop migrate up|down|status"
	if len(args) != 1 {
		return usagef(use)
	}
	switch args[0] {
	case "up", "down", "status":
	default:
		return usagef("%s (unknown %q)", use, args[0])
	}
	pool, err := openDB(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer pool.Close()
	p, err := migrations.Provider(pool, logger.With("module", "migrations"))
	if err != nil {
		return err
	}
	defer p.Close()
	switch args[0] {
	case "up":
		res, err := p.Up(ctx)
		if err != nil {
			return fmt.Errorf("migrate up: %w", err)
		}
		fmt.Fprintf(stdout, "applied %d migration(s)\n", len(res))
	case "down":
		res, err := p.Down(ctx)
		if errors.Is(err, goose.ErrNoNextVersion) {
			return errors.New("migrate down: no migration is applied, so there is nothing to roll back")
		}
		if err != nil {
			return fmt.Errorf("migrate down: %w", err)
		}
		fmt.Fprintf(stdout, "rolled back %s\n", res.Source.Path)
	case "status":
		st, err := p.Status(ctx)
		if err != nil {
			return fmt.Errorf("migrate status: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tSTATE\tAPPLIED AT\tFILE")
		for _, s := range st {
			at := ""
			if !s.AppliedAt.IsZero() {
				at = s.AppliedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", s.Source.Version, s.State, at, s.Source.Path)
		}
		return tw.Flush()
	}
	return nil
}

// apikeyCmd runs `hop apikey create|list|revoke`. create prints only the key on stdout
// so scripts can capture it.
func apikeyCmd(ctx context.Context, cfg Config, logger *slog.Logger, args []string, stdout, stderr io.Writer) error {
	const use = "usage: hop apikey create --name NAME | list | revoke ID"
	if len(args) == 0 {
		return usagef(use)
	}
	// The command line is checked before the database is opened: a typo must not
	// start (or create) the embedded PostgreSQL.
	var name string
	var id int64
	switch args[0] {
	case "create":
		fs := flag.NewFlagSet("apikey create", flag.ContinueOnError)
		fs.SetOutput(stderr)
		fs.StringVar(&name, "name", "", "name of the key (who or what uses it)")
		if err := fs.Parse(args[1:]); err != nil {
			return errUsage
		}
		if strings.TrimSpace(name) == "" || fs.NArg() != 0 {
			return usagef("usage: hop apikey create --name NAME")
		}
	case "list":
		if len(args) != 1 {
			return usagef("usage: hop apikey list")
		}
	case "revoke":
		if len(args) != 2 {
			return usagef("usage: hop apikey revoke ID")
		}
		var err error
		if id, err = strconv.ParseInt(args[1], 10, 64); err != nil {
			return usagef("apikey revoke: %q is not a key id (see hop apikey list)", args[1])
		}
	default:
		return usagef("%s (unknown %q)", use, args[0])
	}
	pool, err := openDB(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrations.Up(ctx, pool, nil); err != nil {
		return err
	}
	store := apikey.NewStore(pool, logger)
	switch args[0] {
	case "create":
		k, key, err := store.Create(ctx, name)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, key)
		fmt.Fprintf(stderr, "created API key %d %q (prefix %s); it is shown only once\n", k.ID, k.Name, k.Prefix)
	case "list":
		keys, err := store.List(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tPREFIX\tCREATED\tLAST USED\tREVOKED")
		t := func(p *time.Time) string {
			if p == nil {
				return "-"
			}
			return p.UTC().Format(time.RFC3339)
		}
		for _, k := range keys {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Prefix, t(&k.CreatedAt), t(k.LastUsedAt), t(k.RevokedAt))
		}
		return tw.Flush()
	case "revoke":
		if err := store.Revoke(ctx, id); err != nil {
			if errors.Is(err, apikey.ErrNotFound) {
				return fmt.Errorf("apikey revoke: no key with id %d", id)
			}
			return err
		}
		fmt.Fprintf(stdout, "revoked API key %d\n", id)
	}
	return nil
}

// healthCmd runs `hop health`: GET /health of the server at --url (default: the
// configured address, or loopback when it listens on all) and exit non-zero unless it
// answers 200. Meant for container health checks in images without curl.
func healthCmd(ctx context.Context, cfg Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "", "base URL of the server (default http://HOP_ADDR, on 127.0.0.1 when it names no host)")
	timeout := fs.Duration("timeout", 3*time.Second, "request timeout")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 0 {
		return usagef("usage: hop health [--url URL] [--timeout D] (unexpected %q)", fs.Arg(0))
	}
	base := *url
	if base == "" {
		base = "http://" + localAddr(cfg.Addr)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/health", nil)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body)
	fmt.Fprintln(stdout, body.Status)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s answered %d (%s)", base, resp.StatusCode, body.Status)
	}
	return nil
}

// localAddr is where this host reaches a server listening on addr: the address itself
// when it names one, else loopback (an empty or unspecified host listens on all).
func localAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil { // Validate has checked addr; keep whatever it was
		return addr
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if err == nil && ip.Is6() {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, port)
}

// domainCmd runs `hop domain add|list|remove`, on the database directly like `hop
// apikey`; running servers hear of a change through Redis, or within their 2 s reload.
func domainCmd(ctx context.Context, cfg Config, logger *slog.Logger, args []string, stdout, stderr io.Writer) error {
	const use = "usage: hop domain add HOST [--base-url URL] | list | remove HOST"
	if len(args) == 0 {
		return usagef(use)
	}
	// The command line is checked before the database is opened, as in apikeyCmd.
	var host, baseURL string
	switch args[0] {
	case "add":
		fs := flag.NewFlagSet("domain add", flag.ContinueOnError)
		fs.SetOutput(stderr)
		fs.StringVar(&baseURL, "base-url", "", "public origin of the domain's short URLs (default https://HOST)")
		// The host may come before or after the flag.
		rest := args[1:]
		if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
			host, rest = rest[0], rest[1:]
		}
		if err := fs.Parse(rest); err != nil {
			return errUsage
		}
		if host == "" && fs.NArg() == 1 {
			host = fs.Arg(0)
		} else if fs.NArg() != 0 || host == "" {
			return usagef(use)
		}
	case "list":
		if len(args) != 1 {
			return usagef(use)
		}
	case "remove":
		if len(args) != 2 {
			return usagef(use)
		}
		host = args[1]
	default:
		return usagef("%s (unknown %q)", use, args[0])
	}
	pool, err := openDB(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrations.Up(ctx, pool, nil); err != nil {
		return err
	}
	// With Redis, running servers hear of a change at once, as through the API; without
	// it (or when it is down) they see it within their 2 s reload.
	rdb, err := openRedis(cfg, nil)
	if err != nil {
		logger.Warn("domain changes reach running servers within 2 s", "err", err)
		rdb = nil
	}
	if rdb != nil {
		defer rdb.Close()
	}
	store := domains.NewStore(pool)
	reg, err := domains.NewRegistry(ctx, cfg.domainsConfig(rdb), store, logger)
	if err != nil {
		return err
	}
	svc := domains.NewService(store, reg)
	switch args[0] {
	case "add":
		d, err := svc.Add(ctx, host, baseURL, "", "", "")
		if err != nil {
			return fmt.Errorf("domain add: %w", err)
		}
		fmt.Fprintf(stdout, "added domain %s (short URLs %s/...)\n", d.Host, d.BaseURL)
	case "list":
		ds, err := svc.List(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "HOST\tBASE URL\tLINKS\tDEFAULT")
		for _, d := range ds {
			def := ""
			if d.Default {
				def = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", d.Host, d.BaseURL, d.Links, def)
		}
		return tw.Flush()
	case "remove":
		if err := svc.Remove(ctx, host); err != nil {
			return fmt.Errorf("domain remove: %w", err)
		}
		fmt.Fprintf(stdout, "removed domain %s\n", host)
	}
	return nil
}
