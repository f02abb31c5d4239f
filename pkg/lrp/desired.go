package lrp

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	ciliumv2 "github.com/cilium/cilium/pkg/k8s/apis/cilium.io/v2"
	slimv1 "github.com/cilium/cilium/pkg/k8s/slim/k8s/apis/meta/v1"
	"github.com/cilium/cilium/pkg/policy/api"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Labels on every object the controller owns.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	// PartOfLabel names the DaemonSet of the install an object belongs to:
	// an install touches only its own objects.
	PartOfLabel    = "app.kubernetes.io/part-of"
	ManagedByValue = "lrpdns"
)

// UpstreamIPsAnnotation is the kube-dns redirect's record of the addresses
// of kube-dns-upstream, which the running caches forward cluster names to:
// a controller that starts while that Service is gone (a restart, a new
// leader) re-creates it on them, as the one that saw it would.
const UpstreamIPsAnnotation = "lrpdns.io/upstream-cluster-ips"

// dnsPort is the port a Service port must expose to count as DNS.
const dnsPort = 53

// Names says which objects the controller reads and writes, all in one
// namespace.
type Names struct {
	Namespace       string
	KubeDNSService  string
	DaemonSet       string
	UpstreamService string
	// Policy is the CiliumLocalRedirectPolicy's name.
	Policy string
}

// AddressPolicy names the policy that redirects DNS sent to addr: Policy and
// the address, dashed (node-local-dns-169-254-20-10).
func (n Names) AddressPolicy(addr netip.Addr) string {
	return n.Policy + "-" + strings.NewReplacer(".", "-", ":", "-").Replace(addr.String())
}

// CheckAddress says whether addr can be a redirected cluster DNS address:
// an address kubelets hand pods as their resolver (--cluster-dns), such as
// classic NodeLocal DNSCache's 169.254.20.10. The unspecified, loopback and
// multicast addresses are refused: no pod sends DNS there through Cilium.
func CheckAddress(addr netip.Addr) error {
	if !addr.IsValid() || addr.IsUnspecified() || addr.IsLoopback() || addr.IsMulticast() || addr.Zone() != "" {
		return fmt.Errorf("invalid redirect address %q: want a unicast IP address without a zone, such as 169.254.20.10", addr)
	}
	return nil
}

// Lease is the leader-election Lease of the install: lrpdns-controller for
// the manifests' DaemonSet (the name every release used), and
// lrpdns-controller-DAEMONSET for any other, so that two installs in one
// namespace elect a leader each.
func (n Names) Lease() string {
	if n.DaemonSet == DefaultNames().DaemonSet {
		return "lrpdns-controller"
	}
	return "lrpdns-controller-" + n.DaemonSet
}

// DefaultNames are the names the manifests use.
func DefaultNames() Names {
	return Names{
		Namespace:       "kube-system",
		KubeDNSService:  "kube-dns",
		DaemonSet:       "node-local-dns",
		UpstreamService: "kube-dns-upstream",
		Policy:          "node-local-dns",
	}
}

// PortError says why the redirect's ports cannot be built.
type PortError struct{ msg string }

func (e *PortError) Error() string { return e.msg }

func portErrorf(format string, args ...any) error { return &PortError{fmt.Sprintf(format, args...)} }

func ownerRef(ds *appsv1.DaemonSet) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion:         "apps/v1",
		Kind:               "DaemonSet",
		Name:               ds.Name,
		UID:                ds.UID,
		Controller:         ptr.To(true),
		BlockOwnerDeletion: ptr.To(true),
	}
}

func ownedMeta(name, namespace string, ds *appsv1.DaemonSet) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:            name,
		Namespace:       namespace,
		Labels:          map[string]string{ManagedByLabel: ManagedByValue, PartOfLabel: ds.Name},
		OwnerReferences: []metav1.OwnerReference{ownerRef(ds)},
	}
}

// dnsServicePorts are kube-dns's ports that serve DNS (port 53), UDP first.
func dnsServicePorts(svc *corev1.Service) []corev1.ServicePort {
	var out []corev1.ServicePort
	for _, p := range svc.Spec.Ports {
		if p.Port == dnsPort && (p.Protocol == corev1.ProtocolUDP || p.Protocol == corev1.ProtocolTCP) {
			out = append(out, p)
		}
	}
	slices.SortStableFunc(out, func(a, b corev1.ServicePort) int { return strings.Compare(string(b.Protocol), string(a.Protocol)) })
	return out
}

// DesiredUpstreamService is kube-dns's selector and DNS ports, same IP
// families, and a ClusterIP of its own. It is owned by the DaemonSet and, when
// there is one, by our policy, so that the garbage collector deletes it only
// after both: never while clients are still redirected to caches that
// forward to it.
func DesiredUpstreamService(n Names, kubeDNS *corev1.Service, ds *appsv1.DaemonSet, policy *ciliumv2.CiliumLocalRedirectPolicy) (*corev1.Service, error) {
	ports := dnsServicePorts(kubeDNS)
	if len(ports) == 0 {
		return nil, portErrorf("Service %s/%s has no DNS port (port 53, UDP or TCP); its ports: %s",
			kubeDNS.Namespace, kubeDNS.Name, describeServicePorts(kubeDNS.Spec.Ports))
	}
	if len(kubeDNS.Spec.Selector) == 0 {
		return nil, portErrorf("Service %s/%s has no selector; the upstream Service needs CoreDNS's pod selector", kubeDNS.Namespace, kubeDNS.Name)
	}
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: ownedMeta(n.UpstreamService, n.Namespace, ds),
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeClusterIP,
			Selector:       kubeDNS.Spec.Selector,
			IPFamilies:     kubeDNS.Spec.IPFamilies,
			IPFamilyPolicy: kubeDNS.Spec.IPFamilyPolicy,
		},
	}
	if policy != nil && policy.UID != "" && policy.Labels[ManagedByLabel] == ManagedByValue {
		svc.OwnerReferences = append(svc.OwnerReferences, metav1.OwnerReference{
			APIVersion: ciliumv2.SchemeGroupVersion.String(), Kind: ciliumv2.CLRPKindDefinition,
			Name: policy.Name, UID: policy.UID,
		})
	}
	for _, p := range ports {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, Port: p.Port, TargetPort: p.TargetPort})
	}
	if tcp := tcpTwin(ports); tcp != nil {
		svc.Spec.Ports = append(svc.Spec.Ports, *tcp)
	}
	return svc, nil
}

// tcpTwin is the TCP port 53 kube-dns-upstream adds when kube-dns has only
// UDP: the caches forward cluster names over TCP, and CoreDNS serves TCP on
// the port it serves UDP on. nil when kube-dns has a TCP port 53.
func tcpTwin(ports []corev1.ServicePort) *corev1.ServicePort {
	var udp *corev1.ServicePort
	for i, p := range ports {
		if p.Protocol == corev1.ProtocolTCP {
			return nil
		}
		udp = &ports[i]
	}
	if udp == nil {
		return nil
	}
	name := "dns-tcp"
	if udp.Name == name {
		name = "dns-tcp-53"
	}
	return &corev1.ServicePort{Name: name, Protocol: corev1.ProtocolTCP, Port: dnsPort, TargetPort: udp.TargetPort}
}

// DesiredPolicy redirects kube-dns's DNS ports to the DaemonSet's pods: the
// frontend names are kube-dns's port names, the backend has the container
// ports of the same names and protocols, with the containers' numbers.
func DesiredPolicy(n Names, kubeDNS *corev1.Service, ds *appsv1.DaemonSet) (*ciliumv2.CiliumLocalRedirectPolicy, error) {
	ports := dnsServicePorts(kubeDNS)
	if len(ports) == 0 {
		return nil, portErrorf("Service %s/%s has no DNS port (port 53, UDP or TCP); its ports: %s",
			kubeDNS.Namespace, kubeDNS.Name, describeServicePorts(kubeDNS.Spec.Ports))
	}
	sel := ds.Spec.Selector
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		return nil, portErrorf("DaemonSet %s/%s has no pod selector", ds.Namespace, ds.Name)
	}
	containerPorts := map[string]corev1.ContainerPort{}
	for _, c := range ds.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name != "" {
				containerPorts[p.Name+"/"+string(protocolOrTCP(p.Protocol))] = p
			}
		}
	}
	var front, back []ciliumv2.PortInfo
	for _, p := range ports {
		if p.Name == "" {
			return nil, portErrorf("Service %s/%s port %d/%s has no name; the redirect matches ports by name, so name it (for example dns for UDP, dns-tcp for TCP)",
				kubeDNS.Namespace, kubeDNS.Name, p.Port, p.Protocol)
		}
		cp, ok := containerPorts[p.Name+"/"+string(p.Protocol)]
		if !ok {
			return nil, portErrorf("Service %s/%s port %q (%d/%s) has no containerPort named %q with protocol %s in DaemonSet %s/%s (its named container ports: %s); without it the redirect has no backend and DNS silently stays on kube-dns. Name the cache's DNS container ports %s%s",
				kubeDNS.Namespace, kubeDNS.Name, p.Name, p.Port, p.Protocol, p.Name, p.Protocol, ds.Namespace, ds.Name, describeContainerPorts(ds),
				wantedNames(ports), componentHint(ports))
		}
		front = append(front, ciliumv2.PortInfo{Port: strconv.Itoa(int(p.Port)), Protocol: api.L4Proto(p.Protocol), Name: p.Name})
		back = append(back, ciliumv2.PortInfo{Port: strconv.Itoa(int(cp.ContainerPort)), Protocol: api.L4Proto(p.Protocol), Name: p.Name})
	}
	exprs := make([]slimv1.LabelSelectorRequirement, 0, len(sel.MatchExpressions))
	for _, e := range sel.MatchExpressions {
		exprs = append(exprs, slimv1.LabelSelectorRequirement{Key: e.Key, Operator: slimv1.LabelSelectorOperator(e.Operator), Values: e.Values})
	}
	if len(exprs) == 0 {
		exprs = nil
	}
	return &ciliumv2.CiliumLocalRedirectPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: ciliumv2.SchemeGroupVersion.String(), Kind: ciliumv2.CLRPKindDefinition},
		ObjectMeta: ownedMeta(n.Policy, n.Namespace, ds),
		Spec: ciliumv2.CiliumLocalRedirectPolicySpec{
			RedirectFrontend: ciliumv2.RedirectFrontend{ServiceMatcher: &ciliumv2.ServiceInfo{
				Name: kubeDNS.Name, Namespace: kubeDNS.Namespace, ToPorts: front,
			}},
			RedirectBackend: ciliumv2.RedirectBackend{
				LocalEndpointSelector: slimv1.LabelSelector{MatchLabels: sel.MatchLabels, MatchExpressions: exprs},
				ToPorts:               back,
			},
			Description: fmt.Sprintf("Managed by lrpdns: DNS for Service %s/%s answered by the DaemonSet %s/%s pod on the same node.",
				kubeDNS.Namespace, kubeDNS.Name, ds.Namespace, ds.Name),
		},
	}, nil
}

// DesiredAddressPolicy redirects DNS sent to addr (not a Service: the
// address kubelets give pods, such as classic NodeLocal DNSCache's
// 169.254.20.10) to the DaemonSet's pods, with kube-dns's DNS port names
// and the same backend as DesiredPolicy. Cilium creates the frontend
// itself, only on nodes with a ready cache pod; elsewhere the address
// reaches whatever the node has there, or nothing.
func DesiredAddressPolicy(n Names, kubeDNS *corev1.Service, ds *appsv1.DaemonSet, addr netip.Addr) (*ciliumv2.CiliumLocalRedirectPolicy, error) {
	if err := CheckAddress(addr); err != nil {
		return nil, err
	}
	p, err := DesiredPolicy(n, kubeDNS, ds)
	if err != nil {
		return nil, err
	}
	p.Name = n.AddressPolicy(addr)
	ports := p.Spec.RedirectFrontend.ServiceMatcher.ToPorts
	p.Spec.RedirectFrontend = ciliumv2.RedirectFrontend{AddressMatcher: &ciliumv2.Frontend{IP: addr.String(), ToPorts: ports}}
	p.Spec.Description = fmt.Sprintf("Managed by lrpdns: DNS sent to %s answered by the DaemonSet %s/%s pod on the same node.",
		addr, ds.Namespace, ds.Name)
	return p, nil
}

func protocolOrTCP(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

func describeServicePorts(ports []corev1.ServicePort) string {
	var s []string
	for _, p := range ports {
		s = append(s, fmt.Sprintf("%q %d/%s", p.Name, p.Port, p.Protocol))
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func describeContainerPorts(ds *appsv1.DaemonSet) string {
	var s []string
	for _, c := range ds.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name != "" {
				s = append(s, fmt.Sprintf("%q %d/%s", p.Name, p.ContainerPort, protocolOrTCP(p.Protocol)))
			}
		}
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// wantedNames says which names the cache's DNS container ports need.
func wantedNames(ports []corev1.ServicePort) string {
	var s []string
	for _, p := range ports {
		s = append(s, fmt.Sprintf("%q (%s)", p.Name, p.Protocol))
	}
	return strings.Join(s, " and ")
}

// componentHint names the shipped kustomize component for known names.
func componentHint(ports []corev1.ServicePort) string {
	var names []string
	for _, p := range ports {
		names = append(names, p.Name)
	}
	switch strings.Join(names, ",") {
	case "udp-53,tcp-53":
		return ": kubectl apply -k an overlay with the component manifests/components/kube-dns-udp-53 (or manifests/components/rke2 on RKE2)"
	case "dns,dns-tcp":
		return ": the names manifests/ ships"
	}
	return ""
}
