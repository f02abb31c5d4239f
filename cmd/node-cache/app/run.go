// Package app is the node-cache command: `node-cache [flags]` serves,
// `node-cache render [flags]` prints the Corefile it would serve. It parses
// the command line, handles signals and wires package nodecache, where the
// logic lives.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/lrpdns/lrpdns/internal/version"
	"github.com/lrpdns/lrpdns/pkg/nodecache"
)

// Run is the node-cache command: `node-cache [flags]` serves until ctx ends;
// `node-cache render [flags]` prints the Corefile it would serve;
// `node-cache --version` prints the version.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	name := "node-cache"
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-version") {
		_, err := fmt.Fprintln(stdout, version.String(name))
		return err
	}
	render := len(args) > 0 && args[0] == "render"
	if render {
		name, args = "node-cache render", args[1:]
	}
	opts, err := nodecache.ParseFlags(name, args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if render {
		text, err := opts.Corefile()
		if err != nil {
			return err
		}
		_, err = stdout.Write(text)
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if err := opts.DiscoverClusterDNS(ctx, log); err != nil {
		return err
	}
	s, err := nodecache.Start(opts, log)
	if err != nil {
		return err
	}
	// SIGHUP re-reads the inputs, as operators expect of a daemon; its
	// default action would end the process without a lameduck.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	s.ReloadOn(hup)
	return s.Serve(ctx)
}
