package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

const fixtures = "../../pkg/verify/testdata/"

func TestVerifyExitStatus(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	err := Run(context.Background(), []string{"verify", "--flows", fixtures + "healthy.jsonpb", "--since", "0", "--node-resolvers", "10.99.0.1"}, &out, io.Discard)
	if err != nil || !strings.Contains(out.String(), "PASS: the node-local DNS path is proven") {
		t.Errorf("healthy: %v\n%s", err, out.String())
	}
	out.Reset()
	err = Run(context.Background(), []string{"verify", "--flows", fixtures + "bypass.jsonpb", "--since", "0", "-o", "json"}, &out, io.Discard)
	if !errors.Is(err, ErrVerifyFailed) || !strings.Contains(out.String(), `"pass": false`) {
		t.Errorf("bypass: %v, want ErrVerifyFailed and a JSON report\n%s", err, out.String())
	}
}

func TestVerifyStdin(t *testing.T) {
	f, err := os.Open(fixtures + "healthy.jsonpb")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	if err := runVerify(context.Background(), []string{"--flows", "-", "--since", "0"}, f, &out, io.Discard); err != nil {
		t.Errorf("stdin: %v\n%s", err, out.String())
	}
}

func TestVerifyFlagErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"verify"},
		{"verify", "--flows", "x", "--hubble-server", "y"},
		{"verify", "--flows", fixtures + "healthy.jsonpb", "-o", "yaml"},
		{"verify", "--flows", fixtures + "healthy.jsonpb", "--node-resolvers", "not-an-ip"},
	} {
		err := Run(context.Background(), args, io.Discard, io.Discard)
		if err == nil || errors.Is(err, ErrVerifyFailed) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}
