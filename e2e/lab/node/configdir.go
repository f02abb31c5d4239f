package node

import (
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// ConfigDir writes each key of the ConfigMap in file (YAML) to a file of
// that name in dir, as a ConfigMap volume projects it: how cilium-agent's
// DaemonSet hands it cilium-config for --config-dir.
func ConfigDir(file, dir string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(b, &cm); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if cm.Kind != "ConfigMap" || len(cm.Data) == 0 {
		return fmt.Errorf("%s: want a ConfigMap with data, got kind %q with %d keys", file, cm.Kind, len(cm.Data))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for k, v := range cm.Data {
		if err := writeFile(dir, k, v); err != nil {
			return err
		}
	}
	return nil
}
