// Command node-cache is the per-node DNS cache: embedded CoreDNS serving the
// Corefile rendered from its flags, resolv.conf and the kube-dns ConfigMap.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/lrpdns/lrpdns/cmd/node-cache/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := app.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "node-cache:", err)
		os.Exit(1)
	}
}
