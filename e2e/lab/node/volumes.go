package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// volumes materialises the pod's volumes under its directory and returns,
// per container name, what to mount where.
func (p *podRuntime) volumes(ctx context.Context) (map[string][]mount, error) {
	dirs := map[string]string{}
	for _, v := range p.pod.Spec.Volumes {
		dir := filepath.Join(p.dir, "vol", v.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		var err error
		switch {
		case v.ConfigMap != nil:
			err = p.configMap(ctx, dir, v.ConfigMap.Name, v.ConfigMap.Items, ptr.Deref(v.ConfigMap.Optional, false))
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				switch {
				case src.ServiceAccountToken != nil:
					err = p.token(ctx, dir, src.ServiceAccountToken)
				case src.ConfigMap != nil:
					err = p.configMap(ctx, dir, src.ConfigMap.Name, src.ConfigMap.Items, ptr.Deref(src.ConfigMap.Optional, false))
				case src.DownwardAPI != nil:
					err = p.downwardAPI(dir, src.DownwardAPI.Items)
				default:
					err = fmt.Errorf("projected source %+v is not supported by the lab", src)
				}
				if err != nil {
					break
				}
			}
		case v.EmptyDir != nil:
		default:
			err = fmt.Errorf("volume %s: only configMap, projected and emptyDir are supported by the lab", v.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		dirs[v.Name] = dir
	}
	out := map[string][]mount{}
	for _, c := range p.pod.Spec.Containers {
		for _, m := range c.VolumeMounts {
			src, ok := dirs[m.Name]
			if !ok {
				return nil, fmt.Errorf("container %s mounts unknown volume %s", c.Name, m.Name)
			}
			out[c.Name] = append(out[c.Name], mount{Source: filepath.Join(src, m.SubPath), Target: m.MountPath, ReadOnly: m.ReadOnly})
		}
	}
	return out, nil
}

func (p *podRuntime) configMap(ctx context.Context, dir, name string, items []corev1.KeyToPath, optional bool) error {
	cm, err := p.a.cs.CoreV1().ConfigMaps(p.pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && optional {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ConfigMap %s: %w", name, err)
	}
	files := map[string]string{}
	if len(items) == 0 {
		for k, v := range cm.Data {
			files[k] = v
		}
	}
	for _, it := range items {
		v, ok := cm.Data[it.Key]
		if !ok && !optional {
			return fmt.Errorf("ConfigMap %s has no key %s", name, it.Key)
		}
		files[it.Path] = v
	}
	for path, content := range files {
		if err := writeFile(dir, path, content); err != nil {
			return err
		}
	}
	return nil
}

func (p *podRuntime) token(ctx context.Context, dir string, src *corev1.ServiceAccountTokenProjection) error {
	sa := p.pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: ptr.To(max(ptr.Deref(src.ExpirationSeconds, 3607), 600)),
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.pod.Name, UID: p.pod.UID},
	}}
	if src.Audience != "" {
		req.Spec.Audiences = []string{src.Audience}
	}
	tok, err := p.a.cs.CoreV1().ServiceAccounts(p.pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("token for ServiceAccount %s: %w", sa, err)
	}
	return writeFile(dir, src.Path, tok.Status.Token)
}

func (p *podRuntime) downwardAPI(dir string, items []corev1.DownwardAPIVolumeFile) error {
	for _, it := range items {
		if it.FieldRef == nil {
			return fmt.Errorf("downwardAPI item %s: only fieldRef is supported by the lab", it.Path)
		}
		var v string
		switch it.FieldRef.FieldPath {
		case "metadata.namespace":
			v = p.pod.Namespace
		case "metadata.name":
			v = p.pod.Name
		default:
			return fmt.Errorf("downwardAPI %s is not supported by the lab", it.FieldRef.FieldPath)
		}
		if err := writeFile(dir, it.Path, v); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(dir, rel, content string) error {
	path := filepath.Join(dir, filepath.Clean("/"+rel))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), 0o644)
}
