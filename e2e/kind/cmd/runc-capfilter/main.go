// Command runc-capfilter is runc with every capability outside its own
// bounding set taken out of the container's spec first (package
// capfilter): registered as Docker's and the kind node's containerd's
// default runtime on a machine whose bounding set lacks some capability,
// privileged containers run there. It then executes the real runc, the
// first of /usr/local/sbin/runc, /usr/sbin/runc and /usr/bin/runc that is
// not itself, with the same arguments.
//
//	runc-capfilter --missing   prints the known capabilities outside the
//	                           bounding set (nothing when none is missing)
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/lrpdns/lrpdns/e2e/kind/capfilter"
)

func main() {
	if err := run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "runc-capfilter:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 2 && args[1] == "--missing" {
		keep, err := bounding()
		if err != nil {
			return err
		}
		if m := keep.Missing(); len(m) > 0 {
			fmt.Println(strings.Join(m, " "))
		}
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	runc := ""
	for _, p := range []string{"/usr/local/sbin/runc", "/usr/sbin/runc", "/usr/bin/runc"} {
		if real, err := filepath.EvalSymlinks(p); err == nil && real != self {
			runc = p
			break
		}
	}
	if runc == "" {
		return fmt.Errorf("no runc besides %s", self)
	}
	cwd, _ := os.Getwd()
	if path, spec := capfilter.Target(args[1:], cwd); path != "" {
		if err := filter(path, spec); err != nil {
			return err
		}
	}
	args[0] = runc
	return syscall.Exec(runc, args, os.Environ())
}

func bounding() (capfilter.Set, error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	return capfilter.Bounding(string(status))
}

func filter(path string, spec bool) error {
	keep, err := bounding()
	if err != nil {
		return err
	}
	doc, err := os.ReadFile(path) //nolint:gosec // the runtime's own bundle
	if err != nil {
		return err
	}
	out, dropped, err := capfilter.Filter(doc, keep, spec)
	if err != nil || len(dropped) == 0 {
		return err
	}
	return os.WriteFile(path, out, 0o600)
}
