package app

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	k8sversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/lrpdns/lrpdns/internal/version"
	"github.com/lrpdns/lrpdns/pkg/lrp"
)

func runController(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("lrpdns controller", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n, c := lrp.DefaultNames(), lrp.DefaultCiliumNames()
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig `FILE`; default: in-cluster, or $KUBECONFIG")
	fs.StringVar(&n.Namespace, "namespace", n.Namespace, "namespace of kube-dns, the DaemonSet and what the controller owns")
	fs.StringVar(&n.KubeDNSService, "kube-dns-service", n.KubeDNSService, "the cluster DNS Service to redirect")
	fs.StringVar(&n.DaemonSet, "daemonset", n.DaemonSet, "the node-cache DaemonSet")
	fs.StringVar(&n.UpstreamService, "upstream-service", n.UpstreamService, "the Service the cache forwards cluster names to (owned)")
	fs.StringVar(&n.Policy, "policy-name", n.Policy, "the CiliumLocalRedirectPolicy's name (owned)")
	ciliumNS := fs.String("cilium-namespace", "", "namespace of Cilium's ConfigMap and DaemonSet; default: --namespace")
	fs.StringVar(&c.ConfigMap, "cilium-config", c.ConfigMap, "Cilium's ConfigMap")
	fs.StringVar(&c.DaemonSet, "cilium-daemonset", c.DaemonSet, "Cilium's agent DaemonSet")
	ciliumVersion := fs.String("cilium-version", "", "Cilium's `RELEASE` (1.20.2) when its agent's image has no version tag (a digest only), checked against the redirect's known faults; default: the image's tag")
	leader := fs.Bool("leader-elect", true, "elect one active replica (Lease lrpdns-controller, or lrpdns-controller-DAEMONSET for another --daemonset)")
	metrics := fs.String("metrics-addr", ":8080", "Prometheus endpoint `HOST:PORT`; 0 disables")
	health := fs.String("health-addr", ":8081", "/healthz and /readyz `HOST:PORT`; 0 disables")
	drain := fs.Duration("upstream-drain", time.Minute, "how long the upstream Service outlives the DaemonSet, for its terminating pods (at least their lameduck and grace period)")
	withheld := fs.Duration("withheld-warning", 10*time.Minute, "how long the redirect may wait for the cache pods (a rollout, a pod stuck terminating) before a RedirectWithheld Warning names the nodes holding it up")
	addrs := fs.String("redirect-addresses", "", "cluster DNS `IP[,IP]` that are not a Service, redirected to the cache too: the kubelets' --cluster-dns of a cluster coming from classic NodeLocal DNSCache (169.254.20.10); one policy each")
	dev := fs.Bool("log-dev", false, "human-readable logs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *drain <= 0 {
		return fmt.Errorf("--upstream-drain %v: want a positive duration", *drain)
	}
	if *withheld <= 0 {
		return fmt.Errorf("--withheld-warning %v: want a positive duration", *withheld)
	}
	if *ciliumVersion != "" {
		if _, err := k8sversion.ParseSemantic(strings.TrimPrefix(*ciliumVersion, "v")); err != nil {
			return fmt.Errorf("invalid --cilium-version %q: want a release such as 1.20.2", *ciliumVersion)
		}
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	addresses, err := parseAddresses(*addrs)
	if err != nil {
		return err
	}
	c.Namespace = n.Namespace
	if *ciliumNS != "" {
		c.Namespace = *ciliumNS
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(stderr), zap.UseDevMode(*dev)))

	var cfg *rest.Config
	if *kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", *kubeconfig)
	} else {
		cfg, err = ctrl.GetConfig()
	}
	if err != nil {
		return fmt.Errorf("failed to load kubeconfig: %w", err)
	}
	cfg.UserAgent = "lrpdns-controller/" + version.Version
	mgr, err := lrp.NewManager(cfg, lrp.Options{Names: n, Cilium: c, LeaderElection: *leader, MetricsAddr: *metrics, HealthAddr: *health, UpstreamDrain: *drain,
		WithheldWarning: *withheld, CiliumVersion: *ciliumVersion, Addresses: addresses, Self: lrp.SelfPod(os.Getenv("POD_NAME"), os.Getenv("POD_UID"))})
	if err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("failed to add health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("failed to add ready check: %w", err)
	}
	ctrl.Log.Info("starting controller", "version", version.Version, "namespace", n.Namespace, "daemonset", n.DaemonSet, "kubeDNS", n.KubeDNSService, "redirectAddresses", addresses)
	return mgr.Start(ctx)
}

// parseAddresses reads --redirect-addresses.
func parseAddresses(list string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		a, err := netip.ParseAddr(s)
		if err == nil {
			err = lrp.CheckAddress(a)
		}
		if err != nil {
			return nil, fmt.Errorf("invalid --redirect-addresses entry %q: want unicast IP addresses separated by commas, such as 169.254.20.10", s)
		}
		if slices.Contains(out, a) {
			return nil, fmt.Errorf("invalid --redirect-addresses: %s given twice", a)
		}
		out = append(out, a)
	}
	return out, nil
}
