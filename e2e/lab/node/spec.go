package node

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Images maps an image repository (without tag or digest) to a binary, and
// the image's entrypoint path to the same binary.
type Images map[string]Image

// Image is one image the lab can run.
type Image struct {
	Entrypoint string // e.g. /node-cache
	Binary     string // the host path of the binary built by the lab
}

func repository(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref = ref[:i]
	}
	return ref
}

// Argv returns the command line for a container: its command (or the
// image's entrypoint) and args, with image paths mapped to host binaries.
func (im Images) Argv(c *corev1.Container) ([]string, error) {
	img, ok := im[repository(c.Image)]
	if !ok {
		return nil, fmt.Errorf("image %q is not one the lab built (known: %s)", c.Image, strings.Join(im.names(), ", "))
	}
	argv := slices.Clone(c.Command)
	if len(argv) == 0 {
		argv = []string{img.Entrypoint}
	}
	argv = append(argv, c.Args...)
	if mapped, ok := im.Binary(argv[0]); ok {
		argv[0] = mapped
	} else {
		return nil, fmt.Errorf("container %s runs %q, which is not an entrypoint the lab knows", c.Name, argv[0])
	}
	return argv, nil
}

// Binary maps an entrypoint path to its host binary.
func (im Images) Binary(entrypoint string) (string, bool) {
	for _, img := range im {
		if img.Entrypoint == entrypoint || path.Base(img.Entrypoint) == entrypoint {
			return img.Binary, true
		}
	}
	return "", false
}

func (im Images) names() []string {
	var out []string
	for k := range im {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ServiceEnv is what the kubelet sets for the Services of the pod's
// namespace (and `kubernetes` in default): NAME_SERVICE_HOST, _PORT,
// _PORT_<PORTNAME>, and the Docker-link variables.
func ServiceEnv(services []corev1.Service) []corev1.EnvVar {
	var out []corev1.EnvVar
	for _, s := range services {
		if s.Spec.ClusterIP == "" || s.Spec.ClusterIP == corev1.ClusterIPNone || len(s.Spec.Ports) == 0 {
			continue
		}
		name := strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_"))
		first := s.Spec.Ports[0]
		out = append(out,
			corev1.EnvVar{Name: name + "_SERVICE_HOST", Value: s.Spec.ClusterIP},
			corev1.EnvVar{Name: name + "_SERVICE_PORT", Value: strconv.Itoa(int(first.Port))},
		)
		for _, p := range s.Spec.Ports {
			if p.Name != "" {
				out = append(out, corev1.EnvVar{Name: name + "_SERVICE_PORT_" + strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_")), Value: strconv.Itoa(int(p.Port))})
			}
		}
		proto := strings.ToLower(string(first.Protocol))
		url := fmt.Sprintf("%s://%s:%d", proto, s.Spec.ClusterIP, first.Port)
		out = append(out, corev1.EnvVar{Name: name + "_PORT", Value: url})
		for _, p := range s.Spec.Ports {
			pp := strings.ToLower(string(p.Protocol))
			prefix := fmt.Sprintf("%s_PORT_%d_%s", name, p.Port, strings.ToUpper(pp))
			out = append(out,
				corev1.EnvVar{Name: prefix, Value: fmt.Sprintf("%s://%s:%d", pp, s.Spec.ClusterIP, p.Port)},
				corev1.EnvVar{Name: prefix + "_PROTO", Value: pp},
				corev1.EnvVar{Name: prefix + "_PORT", Value: strconv.Itoa(int(p.Port))},
				corev1.EnvVar{Name: prefix + "_ADDR", Value: s.Spec.ClusterIP},
			)
		}
	}
	return out
}

// ContainerEnv resolves a container's env: service links first, then the
// container's own entries (which win), with the fieldRef and resourceFieldRef
// sources the manifests use.
func ContainerEnv(pod *corev1.Pod, c *corev1.Container, services []corev1.Service, podIP, nodeName string) ([]string, error) {
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	if pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks {
		for _, e := range ServiceEnv(services) {
			set(e.Name, e.Value)
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			set(e.Name, e.Value)
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				set(e.Name, pod.Name)
			case "metadata.namespace":
				set(e.Name, pod.Namespace)
			case "metadata.uid":
				set(e.Name, string(pod.UID))
			case "status.podIP":
				set(e.Name, podIP)
			case "spec.nodeName":
				set(e.Name, nodeName)
			default:
				return nil, fmt.Errorf("env %s: fieldRef %s is not supported by the lab", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		case e.ValueFrom.ResourceFieldRef != nil:
			v, err := resourceValue(c, e.ValueFrom.ResourceFieldRef)
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			set(e.Name, v)
		default:
			return nil, fmt.Errorf("env %s: only value, fieldRef and resourceFieldRef are supported by the lab", e.Name)
		}
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vars[k])
	}
	return out, nil
}

func resourceValue(c *corev1.Container, ref *corev1.ResourceFieldSelector) (string, error) {
	var q resource.Quantity
	switch ref.Resource {
	case "limits.memory":
		q = c.Resources.Limits[corev1.ResourceMemory]
	case "requests.memory":
		q = c.Resources.Requests[corev1.ResourceMemory]
	default:
		return "", fmt.Errorf("resourceFieldRef %s is not supported by the lab", ref.Resource)
	}
	if q.IsZero() {
		return "", fmt.Errorf("resourceFieldRef %s: the container sets no value", ref.Resource)
	}
	return strconv.FormatInt(q.Value(), 10), nil
}

// ResolvConf is the pod's /etc/resolv.conf for its dnsPolicy.
func ResolvConf(pod *corev1.Pod, nodeResolvConf []byte, clusterDNS, clusterDomain string) ([]byte, error) {
	switch pod.Spec.DNSPolicy {
	case corev1.DNSDefault:
		return nodeResolvConf, nil
	case corev1.DNSClusterFirst, "":
		if pod.Spec.HostNetwork {
			return nodeResolvConf, nil
		}
		return fmt.Appendf(nil, "search %s.svc.%s svc.%s %s\nnameserver %s\noptions ndots:5\n",
			pod.Namespace, clusterDomain, clusterDomain, clusterDomain, clusterDNS), nil
	default:
		return nil, fmt.Errorf("dnsPolicy %s is not supported by the lab", pod.Spec.DNSPolicy)
	}
}
