package chart

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
)

// HelmEnv names the helm binary.
const HelmEnv = "LRPDNS_HELM"

// ErrNoHelm says LRPDNS_HELM is unset.
var ErrNoHelm = errors.New(HelmEnv + " is unset; run make test, which builds helm from the module proxy")

// Helm is the helm binary from the environment.
func Helm() (string, error) {
	h := os.Getenv(HelmEnv)
	if h == "" {
		return "", ErrNoHelm
	}
	return h, nil
}

// Render runs `helm template` on the chart in dir into namespace, with
// values (nil for the chart's defaults), and returns multi-document YAML.
func Render(helm, dir, namespace string, values map[string]any) ([]byte, error) {
	args := []string{"template", "lrpdns", dir, "--namespace", namespace}
	if values != nil {
		b, err := json.Marshal(values)
		if err != nil {
			return nil, fmt.Errorf("failed to encode values: %w", err)
		}
		f, err := os.CreateTemp("", "lrpdns-values-*.json")
		if err != nil {
			return nil, fmt.Errorf("failed to write values: %w", err)
		}
		defer os.Remove(f.Name())
		if _, err := f.Write(b); err != nil {
			return nil, fmt.Errorf("failed to write values: %w", err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("failed to write values: %w", err)
		}
		args = append(args, "--values", f.Name())
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helm, args...) //nolint:gosec // helm is the operator's LRPDNS_HELM
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("failed to render chart %s: %w: %s", dir, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}
