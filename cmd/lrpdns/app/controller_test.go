package app

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestControllerRefusesBadFlags: a flag value the controller cannot use is
// refused before anything connects, naming the flag and the value.
func TestControllerRefusesBadFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"controller", "--upstream-drain", "0s"}, "--upstream-drain 0s: want a positive duration"},
		{[]string{"controller", "--upstream-drain", "-5s"}, "--upstream-drain -5s"},
		{[]string{"controller", "--withheld-warning", "0s"}, "--withheld-warning 0s: want a positive duration"},
		{[]string{"controller", "--cilium-version", "latest"}, `invalid --cilium-version "latest": want a release such as 1.20.2`},
		{[]string{"controller", "extra"}, `unexpected argument "extra"`},
		{[]string{"controller", "--redirect-addresses", "169.254.20.10,dns.local"}, `--redirect-addresses entry "dns.local": want unicast IP addresses`},
		{[]string{"controller", "--redirect-addresses", "127.0.0.1"}, `--redirect-addresses entry "127.0.0.1"`},
		{[]string{"controller", "--redirect-addresses", "0.0.0.0"}, `--redirect-addresses entry "0.0.0.0"`},
		{[]string{"controller", "--redirect-addresses", "fe80::1%eth0"}, `--redirect-addresses entry "fe80::1%eth0"`},
		{[]string{"controller", "--redirect-addresses", "169.254.20.10, 169.254.20.10"}, "169.254.20.10 given twice"},
	} {
		err := Run(context.Background(), tc.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}
