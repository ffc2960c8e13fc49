// Command hop is a URL shortener with real-time click analytics. See README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hop-dev/hop/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal drains and stops cleanly; a second one, no longer caught, quits
	// at once (an operator's second Ctrl-C). Answered clicks are on disk or in Redis.
	go func() { <-ctx.Done(); stop() }()
	err := app.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "hop:", err)
		os.Exit(app.ExitCode(err))
	}
}
