// Package manifests renders the kustomizations under manifests/ with
// kustomize as a library, the way `kubectl apply -k` does. It only renders;
// it never talks to a cluster.
package manifests

import (
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Render builds the kustomization in dir, plus the named components (paths
// relative to dir), and returns multi-document YAML.
func Render(dir string, components ...string) ([]byte, error) {
	fs := filesys.MakeFsOnDisk()
	target := dir
	if len(components) > 0 {
		// Components are added by an overlay, as a user would.
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, fmt.Errorf("failed to resolve %s: %w", dir, err)
		}
		tmp, err := os.MkdirTemp("", "lrpdns-overlay-")
		if err != nil {
			return nil, fmt.Errorf("failed to create overlay: %w", err)
		}
		defer os.RemoveAll(tmp)
		rel, err := filepath.Rel(tmp, abs)
		if err != nil {
			return nil, fmt.Errorf("failed to locate %s from the overlay: %w", dir, err)
		}
		k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - " + rel + "\ncomponents:\n"
		for _, c := range components {
			k += "  - " + filepath.Join(rel, c) + "\n"
		}
		if err := os.WriteFile(filepath.Join(tmp, "kustomization.yaml"), []byte(k), 0o600); err != nil {
			return nil, fmt.Errorf("failed to write overlay: %w", err)
		}
		target = tmp
	}
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = types.LoadRestrictionsNone // the overlay reaches outside its directory
	res, err := krusty.MakeKustomizer(opts).Run(fs, target)
	if err != nil {
		return nil, fmt.Errorf("failed to render %s: %w", dir, err)
	}
	out, err := res.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("failed to encode %s: %w", dir, err)
	}
	return out, nil
}
