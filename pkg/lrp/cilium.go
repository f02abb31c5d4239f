package lrp

import (
	"context"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/version"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// CiliumNames says where Cilium's own objects are.
type CiliumNames struct {
	Namespace string
	// ConfigMap holds the agent's options (cilium-config).
	ConfigMap string
	// DaemonSet is the agent (cilium); its image tag gives the version.
	DaemonSet string
}

// DefaultCiliumNames are Cilium's Helm chart defaults.
func DefaultCiliumNames() CiliumNames {
	return CiliumNames{Namespace: "kube-system", ConfigMap: "cilium-config", DaemonSet: "cilium"}
}

type ciliumCheck struct {
	warned bool // something needs the user's attention
	// noRedirect: redirecting on this release would lose DNS.
	noRedirect bool
	// noAddresses: address policies would lose their DNS on this release.
	noAddresses bool
	// why says what the release does wrong, when it does.
	why string
}

// checkCilium reads cilium-config and the agent's image. What it cannot read
// (not found, forbidden, an image without a version tag) it logs and skips.
func (r *Reconciler) checkCilium(ctx context.Context, ds *appsv1.DaemonSet) ciliumCheck {
	log := logf.FromContext(ctx)
	var res ciliumCheck
	cm := &corev1.ConfigMap{}
	switch err := r.CiliumReader.Get(ctx, types.NamespacedName{Namespace: r.Cilium.Namespace, Name: r.Cilium.ConfigMap}, cm); {
	case err != nil:
		log.Info("cannot read Cilium's configuration; not checking enable-local-redirect-policy", "configmap", r.Cilium.Namespace+"/"+r.Cilium.ConfigMap, "err", err.Error())
	default:
		if cm.Data["enable-local-redirect-policy"] != "true" {
			res.warned = true
			r.Events.Eventf(ds, nil, corev1.EventTypeWarning, ReasonLRPDisabled, "Check",
				"ConfigMap %s/%s has enable-local-redirect-policy=%q: Cilium ignores the redirect until it is \"true\" (Helm: localRedirectPolicies.enabled=true)",
				cm.Namespace, cm.Name, cm.Data["enable-local-redirect-policy"])
		}
		if risk := socketLBRisk(cm.Data); risk != "" {
			res.warned = true
			r.Events.Eventf(ds, nil, corev1.EventTypeWarning, ReasonSocketLBPinsClients, "Check", "ConfigMap %s/%s: %s", cm.Namespace, cm.Name, risk)
		}
	}

	agent := &appsv1.DaemonSet{}
	if err := r.CiliumReader.Get(ctx, types.NamespacedName{Namespace: r.Cilium.Namespace, Name: r.Cilium.DaemonSet}, agent); err != nil {
		if !apierrors.IsNotFound(err) {
			log.Info("cannot read Cilium's DaemonSet; not checking its version", "daemonset", r.Cilium.Namespace+"/"+r.Cilium.DaemonSet, "err", err.Error())
		}
		return res
	}
	image := agentImage(agent)
	v, ok := imageVersion(image)
	if r.CiliumVersion != "" {
		v, ok = version.MustParseSemantic(strings.TrimPrefix(r.CiliumVersion, "v")), true
	}
	if !ok {
		res.warned = true
		r.Events.Eventf(ds, nil, corev1.EventTypeWarning, ReasonCiliumVersionUnknown, "Check",
			"the image of Cilium's agent (%s in DaemonSet %s/%s) has no version tag: its release cannot be checked against the known faults of the redirect; "+
				"give it with the controller's --cilium-version (Helm: controller.ciliumVersion)", image, agent.Namespace, agent.Name)
		return res
	}
	verdict := judgeCilium(v)
	if verdict.why != "" {
		res.warned, res.noRedirect, res.noAddresses, res.why = true, !verdict.redirect, !verdict.addresses, verdict.why
		reason := ReasonCiliumFault
		if v.LessThan(version.MustParseSemantic(ciliumFloor)) {
			reason = ReasonCiliumTooOld
		}
		r.Events.Eventf(ds, nil, corev1.EventTypeWarning, reason, "Check", "%s (image %s in DaemonSet %s/%s)",
			verdict.why, image, agent.Namespace, agent.Name)
	}
	return res
}

// SocketLBInPods says whether cilium-config's settings (its data) run
// socket load balancing in pod namespaces, where a socket is translated at
// connect() only: kube-proxy replacement (or bpf-lb-sock) without
// bpf-lb-sock-hostns-only.
func SocketLBInPods(cfg map[string]string) bool {
	kpr := cfg["kube-proxy-replacement"]
	return (kpr == "true" || kpr == "strict" || cfg["bpf-lb-sock"] == "true") && cfg["bpf-lb-sock-hostns-only"] != "true"
}

// socketLBRisk says why cilium-config's settings would lose a client's
// queries across a cache rollout, or "". With socket load balancing in pod
// namespaces (kube-proxy replacement's default), a pod's connect() to
// kube-dns is translated once, to one cache pod's address. A client that
// keeps that socket moves on only when the socket fails: when the old cache
// refuses it (ICMP, while the old pod's network namespace still exists) or
// when the agent terminates sockets connected to deleted backends. Without
// termination, a client that sends nothing while the old pod goes stays on
// an address that is gone (cilium/cilium#31012). In the lab's
// no-termination profile, a connected UDP socket asking every 5 s lost 8 of
// its 10 queries in a rollout; with termination, none.
func socketLBRisk(cfg map[string]string) string {
	if !SocketLBInPods(cfg) || cfg["bpf-lb-sock-terminate-pod-connections"] != "false" {
		return ""
	}
	return "socket load balancing runs in pod namespaces (kube-proxy-replacement=" + strconv.Quote(cfg["kube-proxy-replacement"]) + ", bpf-lb-sock-hostns-only not \"true\") with bpf-lb-sock-terminate-pod-connections=\"false\": " +
		"a client that keeps a connected UDP socket to kube-dns (c-ares, Node.js) and sends nothing while a cache pod is replaced stays on the old pod's address " +
		"and loses every later query until it opens a new socket (cilium/cilium#31012); set socketLB.terminatePodConnections=true (the agent's default) " +
		"or socketLB.hostNamespaceOnly=true in Cilium's Helm values"
}

func agentImage(ds *appsv1.DaemonSet) string {
	cs := ds.Spec.Template.Spec.Containers
	for _, c := range cs {
		if c.Name == "cilium-agent" {
			return c.Image
		}
	}
	if len(cs) > 0 {
		return cs[0].Image
	}
	return ""
}

// imageVersion reads the version in an image reference's tag, as in
// quay.io/cilium/cilium:v1.20.2@sha256:...
func imageVersion(image string) (*version.Version, bool) {
	ref, _, _ := strings.Cut(image, "@")
	i := strings.LastIndexByte(ref, ':')
	if i < 0 || strings.Contains(ref[i:], "/") {
		return nil, false
	}
	v, err := version.ParseSemantic(strings.TrimPrefix(ref[i+1:], "v"))
	if err != nil {
		return nil, false
	}
	return v, true
}
