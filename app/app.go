// Package app wires hop together: configuration, logging, PostgreSQL, Redis, the Echo
// server and the background loops of ingest and stats, all under one errgroup with an
// ordered shutdown. Run is the whole program; main only supplies the process's context,
// arguments, environment and output streams.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Version is set at build time with -ldflags "-X github.com/hop-dev/hop/app.Version=...".
var Version = "dev"

const usage = `hop — URL shortener with real-time click analytics

Usage:
  hop [--config FILE] [serve]           run the server (default)
  hop [--config FILE] migrate up|down|status
  hop [--config FILE] apikey create --name NAME   print a new API key (shown once)
  hop [--config FILE] apikey list
  hop [--config FILE] apikey revoke ID
  hop [--config FILE] domain add HOST [--base-url URL]   add a branded short domain
  hop [--config FILE] domain list | remove HOST
  hop [--config FILE] health [--url URL]  check a running server; exit 0 when healthy
  hop [--config FILE] backup FILE       dump the database to FILE (pg_dump custom format)
  hop [--config FILE] restore FILE      load FILE into an empty data directory, or into DATABASE_URL
  hop version

Clients of a running hop (--url/--key or HOP_URL/HOP_KEY; see docs/cli.md):
  hop import --from csv|yourls|shlink|kutt|bitly|hop [--dry-run] [--on-conflict skip|rename|fail] FILE
  hop export [--format jsonl|csv] [--output FILE]
  hop links create URL [--slug S] [--tag T]... | list | get SLUG | delete SLUG | stats SLUG

Configuration: config.yaml (or --config / HOP_CONFIG), then environment variables
(HOP_ADDR, HOP_DATA_DIR, DATABASE_URL, REDIS_URL, HOP_BASE_URL, ...); see config.yaml.
Without DATABASE_URL hop runs its own PostgreSQL in HOP_DATA_DIR (default ./hop-data).
`

// commandUsage is the part of usage about one server command (with the configuration
// note), or "" for a command that is not one.
func commandUsage(cmd string) string {
	var b strings.Builder
	head := "  hop [--config FILE] " + cmd + " "
	if cmd == "serve" {
		head = "  hop [--config FILE] [serve] "
	}
	for line := range strings.Lines(usage) {
		if strings.HasPrefix(line, head) {
			b.WriteString(line)
		}
	}
	if b.Len() == 0 {
		return ""
	}
	_, config, _ := strings.Cut(usage, "\nConfiguration:")
	return "Usage:\n" + b.String() + "\nConfiguration:" + config
}

// asksForHelp reports whether a command's arguments ask for its usage.
func asksForHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// errUsage is returned for a bad command line; the message has been printed already.
var errUsage = errors.New("invalid usage (see hop --help)")

// Run runs the hop command line: args are the arguments without the program name,
// getenv reads the environment (HOP_CONFIG, every setting, terminal hints), stdout receives command output and stderr the logs.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("hop", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // printed below: to stdout when asked for, to stderr after an error
	configPath := fs.String("config", "", "config file (default $HOP_CONFIG or ./config.yaml)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return nil
		}
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	rest := fs.Args()
	cmd := "serve"
	if len(rest) > 0 {
		cmd, rest = rest[0], rest[1:]
	}
	if cmd == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	if cmd == "version" {
		fmt.Fprintln(stdout, "hop", Version)
		return nil
	}
	// Before the configuration is read: asking how to use a command must not create a
	// database or start PostgreSQL.
	if serverUsage := commandUsage(cmd); serverUsage != "" && asksForHelp(rest) {
		fmt.Fprint(stdout, serverUsage)
		return nil
	}
	// Clients of a running hop: no configuration or database of their own.
	ce := clientEnv{getenv: getenv, stdout: stdout, stderr: stderr}
	switch cmd {
	case "import":
		return importCmd(ctx, ce, rest)
	case "export":
		return exportCmd(ctx, ce, rest)
	case "links":
		return linksCmd(ctx, ce, rest)
	}

	path, required := *configPath, *configPath != ""
	if path == "" {
		if path = getenv("HOP_CONFIG"); path != "" {
			required = true
		} else {
			path = "config.yaml"
		}
	}
	cfg, err := loadConfig(path, required, getenv)
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stderr, getenv)
	// Commands close their connections before returning; only then may the embedded
	// PostgreSQL stop and the data directory be released.
	cfg.data = newDataDir(cfg, logger)
	defer func() {
		if cerr := cfg.data.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()

	switch cmd {
	case "serve":
		if len(rest) > 0 {
			return usagef("usage: hop [--config FILE] serve (it takes no arguments, got %q; flags go before the command)", strings.Join(rest, " "))
		}
		return serve(ctx, cfg, logger, getenv)
	case "migrate":
		return migrateCmd(ctx, cfg, logger, rest, stdout)
	case "apikey":
		return apikeyCmd(ctx, cfg, logger, rest, stdout, stderr)
	case "domain":
		return domainCmd(ctx, cfg, logger, rest, stdout, stderr)
	case "health":
		return healthCmd(ctx, cfg, rest, stdout, stderr)
	case "backup":
		return backupCmd(ctx, cfg, rest, stdout)
	case "restore":
		return restoreCmd(ctx, cfg, logger, rest, stdout)
	}
	fmt.Fprintf(stderr, "hop: unknown command %q\n\n%s", cmd, usage)
	return errUsage
}
