// Command set-image points manifests/kustomization.yaml at REPO/node-cache:TAG
// and REPO/lrpdns:TAG, as `kustomize edit set image` would.
//
//	go run ./hack/set-image REPO TAG
package main

import (
	"fmt"
	"os"

	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"
)

const path = "manifests/kustomization.yaml"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "set-image:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 2 || args[0] == "" || args[1] == "" {
		return fmt.Errorf("usage: set-image REPO TAG (got %q)", args)
	}
	repo, tag := args[0], args[1]
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("failed to read %s: %w", path, err)
	}
	var k types.Kustomization
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		return fmt.Errorf("failed to parse %s: %w", path, err)
	}
	k.Images = []types.Image{
		{Name: "ghcr.io/lrpdns/node-cache", NewName: repo + "/node-cache", NewTag: tag},
		{Name: "ghcr.io/lrpdns/lrpdns", NewName: repo + "/lrpdns", NewTag: tag},
	}
	if repo == "ghcr.io/lrpdns" {
		k.Images[0].NewName, k.Images[1].NewName = "", ""
	}
	out, err := yaml.Marshal(k)
	if err != nil {
		return fmt.Errorf("failed to encode: %w", err)
	}
	header := "# lrpdns: kubectl apply -k manifests/ on a Cilium >= 1.19 cluster with\n# local redirect policies enabled. Everything lands in kube-system.\n"
	return os.WriteFile(path, append([]byte(header), out...), 0o644) //nolint:gosec // a manifest, world-readable like the rest
}
