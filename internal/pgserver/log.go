package pgserver

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
)

const tailLines = 20

// logWriter turns PostgreSQL's stderr into log records and keeps its last lines for
// error messages. A statement's ERROR is the client's to report (hop handles or logs
// it), so it goes to debug; FATAL and PANIC are the server's own trouble.
type logWriter struct {
	logger   *slog.Logger
	stopping atomic.Bool // hop asked for the shutdown: sessions ending is expected

	mu    sync.Mutex
	buf   []byte
	level slog.Level // of the last message, for its DETAIL/HINT/STATEMENT lines
	tail  []string
}

func newLogWriter(logger *slog.Logger) *logWriter { return &logWriter{logger: logger} }

// Write implements io.Writer for exec.Cmd's output.
func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 { // a runaway line without newline
		w.line(string(w.buf))
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

var levels = []struct {
	prefix string
	level  slog.Level
}{
	{"LOG:", slog.LevelInfo},
	{"WARNING:", slog.LevelWarn},
	{"ERROR:", slog.LevelDebug},
	{"FATAL:", slog.LevelError},
	{"PANIC:", slog.LevelError},
	{"NOTICE:", slog.LevelDebug},
	{"INFO:", slog.LevelDebug},
	{"DEBUG", slog.LevelDebug},
}

func (w *logWriter) line(l string) {
	l = strings.TrimRight(l, "\r ")
	if l == "" {
		return
	}
	w.tail = append(w.tail, l)
	if len(w.tail) > tailLines {
		w.tail = w.tail[len(w.tail)-tailLines:]
	}
	lvl := w.level // DETAIL:, HINT:, CONTEXT:, STATEMENT: and wrapped lines
	msg := l
	for _, p := range levels {
		if rest, ok := strings.CutPrefix(l, p.prefix); ok {
			lvl = p.level
			if p.prefix != "DEBUG" {
				msg = strings.TrimSpace(rest)
			}
			break
		}
	}
	if lvl == slog.LevelError && w.stopping.Load() {
		lvl = slog.LevelInfo
	}
	w.level = lvl
	w.logger.Log(context.Background(), lvl, msg)
}

// Tail is the last lines PostgreSQL wrote, joined for an error message.
func (w *logWriter) Tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.tail, " | ")
}
