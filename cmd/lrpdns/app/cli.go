package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/lrpdns/lrpdns/internal/version"
)

const usage = `Usage: lrpdns <command> [flags]

Commands:
  controller   reconcile the CiliumLocalRedirectPolicy and the upstream Service
  verify       prove the node-local DNS path from Hubble flows (exit 0 only if it holds)
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
	case "verify":
		err = runVerify(ctx, args[1:], os.Stdin, stdout, stderr)
	case "probe": // the e2e suite's client, left out of the help
		err = runProbe(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		_, err = fmt.Fprintln(stdout, version.String("lrpdns"))
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
