// Command lrpdns is the cluster side of lrpdns: the controller that owns the
// CiliumLocalRedirectPolicy, and the Hubble check of the DNS path.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/lrpdns/lrpdns/cmd/lrpdns/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := app.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "lrpdns:", err)
		os.Exit(1)
	}
}
