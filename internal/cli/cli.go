package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/lrpdns/lrpdns/internal/version"
)

const usage = `Usage: lrpdns <command> [flags]

Commands:
  controller   reconcile the CiliumLocalRedirectPolicy and the upstream Service
  version      print the version

Run 'lrpdns <command> -h' for a command's flags.
`

// Run is the lrpdns command line.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("missing command")
	}
	var err error
	switch args[0] {
	case "controller":
		err = runController(ctx, args[1:], stderr)
	case "version":
		_, err = fmt.Fprintln(stdout, version.Version)
	case "-h", "--help", "help":
		_, err = fmt.Fprint(stdout, usage)
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}
