package pgserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// ErrNoBinaries means no usable PostgreSQL server binaries were found.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries found")

// installHint is what the error for missing binaries tells the operator to do.
const installHint = "install PostgreSQL's server binaries (Debian/Ubuntu: apt-get install postgresql; " +
	"Alpine: apk add postgresql15 postgresql15-client; macOS: brew install postgresql@15), " +
	"point HOP_PG_BINARIES at the directory holding initdb and postgres, " +
	"or set DATABASE_URL to use an existing PostgreSQL server"

// serverTools must sit together in one directory; the dump tools are looked for there too,
// so a backup is always written by the same release that runs the server.
var serverTools = []string{"initdb", "postgres"}

// Binaries is one directory of PostgreSQL programs and their major version.
type Binaries struct {
	Dir     string
	Version int // major version, e.g. 15
}

// FindBinaries looks for initdb and postgres in dir when it is set (and nowhere else),
// else in the directory of the postgres found on PATH, else in the highest version of
// /usr/lib/postgresql/*/bin (where Debian keeps them, off PATH).
func FindBinaries(dir string) (Binaries, error) {
	if dir != "" {
		if missing := missingTools(dir); missing != "" {
			return Binaries{}, fmt.Errorf("%w in HOP_PG_BINARIES=%s (%s missing); %s", ErrNoBinaries, dir, missing, installHint)
		}
		return withVersion(dir)
	}
	var candidates []string
	if p, err := exec.LookPath("postgres"); err == nil {
		// PATH often holds symlinks (or Debian's wrappers) to the real directory.
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		candidates = append(candidates, filepath.Dir(p))
	}
	candidates = append(candidates, debianDirs()...)
	for _, d := range candidates {
		if missingTools(d) == "" {
			return withVersion(d)
		}
	}
	return Binaries{}, fmt.Errorf("%w on PATH or in /usr/lib/postgresql/*/bin; %s", ErrNoBinaries, installHint)
}

// debianDirs lists /usr/lib/postgresql/*/bin, highest major version first.
func debianDirs() []string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	major := func(d string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64) // "15", "9.6"
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int {
		switch ma, mb := major(a), major(b); {
		case ma > mb:
			return -1
		case ma < mb:
			return 1
		}
		return 0
	})
	return dirs
}

func missingTools(dir string) string {
	for _, t := range serverTools {
		if fi, err := os.Stat(filepath.Join(dir, t)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return t
		}
	}
	return ""
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

func withVersion(dir string) (Binaries, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Binaries{}, fmt.Errorf("postgres binaries: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(abs, "postgres"), "--version").Output()
	if err != nil {
		return Binaries{}, fmt.Errorf("%s/postgres --version: %w", abs, err)
	}
	m := versionRE.FindSubmatch(bytes.TrimSpace(out))
	if m == nil {
		return Binaries{}, fmt.Errorf("%s/postgres --version: unexpected output %q", abs, out)
	}
	v, _ := strconv.Atoi(string(m[1]))
	if v < 13 { // gen_random_uuid() in the schema needs 13
		return Binaries{}, fmt.Errorf("PostgreSQL %s at %s is too old: hop needs 13 or newer; %s", bytes.TrimSpace(out), abs, installHint)
	}
	return Binaries{Dir: abs, Version: v}, nil
}

// tool is the path of a program in b.Dir, or an error naming the directory, the
// package that ships the program and HOP_PG_BINARIES.
func (b Binaries) tool(name string) (string, error) {
	p := filepath.Join(b.Dir, name)
	if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
		return p, nil
	}
	// Distributions ship pg_dump and pg_restore in their client package; initdb,
	// postgres and pg_resetwal come with the server (Debian: postgresql-15, not
	// postgresql-client-15).
	debian, alpine := fmt.Sprintf("postgresql-%d", b.Version), fmt.Sprintf("postgresql%d", b.Version)
	if name == "pg_dump" || name == "pg_restore" {
		debian, alpine = fmt.Sprintf("postgresql-client-%d", b.Version), alpine+"-client"
	}
	return "", fmt.Errorf("%s is missing from %s, where hop found PostgreSQL %d's initdb and postgres: "+
		"install it (Debian/Ubuntu: apt-get install %s, which puts it in /usr/lib/postgresql/%d/bin; Alpine: apk add %s), "+
		"and if it lands elsewhere, set HOP_PG_BINARIES to the directory holding it with PostgreSQL %d's initdb and postgres",
		name, b.Dir, b.Version, debian, b.Version, alpine, b.Version)
}
