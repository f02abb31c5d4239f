// Command lrpdns is the cluster side of lrpdns: the controller that owns the
// CiliumLocalRedirectPolicy, and the Hubble check of the DNS path.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/lrpdns/lrpdns/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "lrpdns:", err)
		os.Exit(1)
	}
}
