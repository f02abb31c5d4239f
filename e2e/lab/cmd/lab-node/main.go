// Command lab-node is the lab's node side:
//
//	lab-node run ...       the node agent (a small kubelet), see package node
//	lab-node exec ... -- CMD   run CMD in a pod, as kubectl exec would
//	lab-node resolver ...  the node's resolver (package noderesolver)
//	lab-node config-dir --configmap FILE --dir DIR   a ConfigMap's keys as files
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/lrpdns/lrpdns/e2e/lab/node"
	"github.com/lrpdns/lrpdns/e2e/noderesolver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx, os.Args[1:])
	stop()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		os.Exit(exit.ExitCode())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab-node:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: lab-node run|exec|resolver|config-dir [flags]")
	}
	fs := flag.NewFlagSet("lab-node "+args[0], flag.ContinueOnError)
	dir := fs.String("dir", "", "the lab node's state directory (exec: the directories of every node, comma-separated)")
	binDir := fs.String("bin-dir", "", "directory of node-cache and lrpdns")
	coredns := fs.String("coredns", "", "stock CoreDNS binary")
	relay := fs.String("hubble-relay", "", "hubble-relay binary")
	nodejs := fs.String("nodejs", "", "Node.js binary, for the e2e suite's Node.js client (empty: none)")
	images := func() node.Images {
		im := node.Images{
			"ghcr.io/lrpdns/node-cache":       {Entrypoint: "/node-cache", Binary: filepath.Join(*binDir, "node-cache")},
			"ghcr.io/lrpdns/lrpdns":           {Entrypoint: "/lrpdns", Binary: filepath.Join(*binDir, "lrpdns")},
			"registry.k8s.io/coredns/coredns": {Entrypoint: "/coredns", Binary: *coredns},
			"quay.io/cilium/hubble-relay":     {Entrypoint: "/usr/bin/hubble-relay", Binary: *relay},
			// Classic NodeLocal DNSCache's image: e2e/lab/classic/node-cache.sh,
			// under an entrypoint name of its own (the image's is /node-cache too).
			"registry.k8s.io/dns/k8s-dns-node-cache": {Entrypoint: "/k8s-dns-node-cache", Binary: filepath.Join(*binDir, "k8s-dns-node-cache")},
		}
		// The glibc client's image: the host's own libc, getent and sh.
		im["docker.io/library/debian"] = node.Image{Entrypoint: "sleep", Binary: "/usr/bin/sleep"}
		if *nodejs != "" {
			im["docker.io/library/node"] = node.Image{Entrypoint: "node", Binary: *nodejs}
		}
		return im
	}
	switch args[0] {
	case "run":
		kubeconfig := fs.String("kubeconfig", "", "admin kubeconfig")
		name := fs.String("node-name", "", "the Node's name")
		ip := fs.String("node-ip", "", "the node's address")
		plugin := fs.String("cilium-cni", "", "cilium-cni binary")
		cniConf := fs.String("cni-conf", "", "CNI network configuration file")
		agentPID := fs.String("agent-pid-file", "", "file holding the Cilium agent's PID")
		resolv := fs.String("resolv-conf", "", "the node's resolv.conf")
		clusterDNS := fs.String("cluster-dns", "10.96.0.10", "kube-dns ClusterIP")
		cgroup := fs.String("cgroup", "", "cgroup v2 `DIR` every container process joins: Cilium's cgroup root, where its socket load balancer attaches")
		nodeNetns := fs.String("node-netns", "", "the node's network namespace `NAME` (ip netns), where hostNetwork pods run")
		kubeletPort := fs.Int("kubelet-port", 10250, "`PORT` on --node-ip for the API server's port-forwards (0: none)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
		if err != nil {
			return err
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		conf, err := os.ReadFile(*cniConf)
		if err != nil {
			return err
		}
		log := slog.New(slog.NewTextHandler(os.Stderr, nil))
		return node.New(node.Config{
			NodeName: *name, NodeIP: *ip, Dir: *dir, Images: images(), ResolvConf: *resolv,
			ClusterDNS: *clusterDNS, ClusterDomain: "cluster.local", Log: log, KubeletPort: *kubeletPort, Cgroup: *cgroup, NodeNetns: *nodeNetns,
			CNI: node.CNI{Plugin: *plugin, Conf: conf, AgentPID: func() (int, error) {
				b, err := os.ReadFile(*agentPID)
				if err != nil {
					return 0, err
				}
				return strconv.Atoi(strings.TrimSpace(string(b)))
			}},
		}, cs).Run(ctx)
	case "exec":
		ns := fs.String("namespace", "default", "the pod's namespace")
		pod := fs.String("pod", "", "the pod's name")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		cmd, err := node.Exec(strings.Split(*dir, ","), images(), *ns, *pod, fs.Args())
		if err != nil {
			return err
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		return cmd.Run()
	case "config-dir":
		file := fs.String("configmap", "", "a ConfigMap, YAML")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return node.ConfigDir(*file, *dir)
	case "resolver":
		listen := fs.String("listen", "", "ADDR:PORT, UDP and TCP")
		zone := fs.String("zone", "example.com", "the `DOMAIN` answered: a name whose first label spells an address (10-1-2-3) gets it, others --answer; names outside are NXDOMAIN")
		answer := fs.String("answer", "198.51.100.53", "the A record for names in the zone that spell no address")
		refuse := fs.String("refuse", "cluster.local", "answer REFUSED for names in this `DOMAIN`: a node resolver knows no cluster names, so a misrouted query fails")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		a, err := netip.ParseAddr(*answer)
		if err != nil {
			return fmt.Errorf("--answer %q: %w", *answer, err)
		}
		return noderesolver.Serve(ctx, *listen, noderesolver.Config{Zone: *zone, Answer: a, Refuse: *refuse})
	}
	return fmt.Errorf("unknown command %q", args[0])
}
