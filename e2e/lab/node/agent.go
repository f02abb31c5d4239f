package node

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// Config says where the node is and what it can run.
type Config struct {
	NodeName string
	NodeIP   string
	// Dir holds the pods' state, volumes and logs.
	Dir    string
	Images Images
	// ResolvConf is the node's resolv.conf, for dnsPolicy Default.
	ResolvConf    string
	ClusterDNS    string
	ClusterDomain string
	CNI           CNI
	Log           *slog.Logger
	// Cgroup is the cgroup v2 directory every container process joins
	// (empty: the one lab-node runs in).
	Cgroup string
	// KubeletPort serves the port-forward API on NodeIP (0: none).
	KubeletPort int
	// NodeNetns is the node's network namespace as `ip netns` names it,
	// where hostNetwork pods run (empty: they are refused).
	NodeNetns string
}

// Agent runs the pods bound to one node.
type Agent struct {
	cfg Config
	cs  kubernetes.Interface

	mu   sync.Mutex
	pods map[types.UID]*podRuntime
}

// New returns an agent for cfg.
func New(cfg Config, cs kubernetes.Interface) *Agent {
	return &Agent{cfg: cfg, cs: cs, pods: map[types.UID]*podRuntime{}}
}

// Run keeps the node Ready and its pods running until ctx ends, then stops
// every pod it runs.
func (a *Agent) Run(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Join(a.cfg.Dir, "pods"), 0o755); err != nil {
		return fmt.Errorf("failed to create state directory: %w", err)
	}
	go a.heartbeat(ctx)
	if a.cfg.KubeletPort != 0 {
		go func() {
			if err := a.servePortForward(ctx, net.JoinHostPort(a.cfg.NodeIP, strconv.Itoa(a.cfg.KubeletPort))); err != nil {
				a.cfg.Log.Error("port-forward API stopped", "err", err)
			}
		}()
	}
	factory := informers.NewSharedInformerFactoryWithOptions(a.cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.cfg.NodeName).String()
	}))
	inf := factory.Core().V1().Pods().Informer()
	queue := make(chan *corev1.Pod, 1024)
	enqueue := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok {
			queue <- p
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, n any) { enqueue(n) },
	}); err != nil {
		return fmt.Errorf("failed to watch pods: %w", err)
	}
	factory.Start(ctx.Done())
	for {
		select {
		case <-ctx.Done():
			a.stopAll()
			return nil
		case p := <-queue:
			a.sync(ctx, p)
		}
	}
}

func (a *Agent) sync(ctx context.Context, pod *corev1.Pod) {
	a.mu.Lock()
	rt := a.pods[pod.UID]
	a.mu.Unlock()
	if pod.DeletionTimestamp != nil {
		if rt == nil {
			a.deletePod(ctx, pod)
			return
		}
		rt.terminate(ctx, pod)
		return
	}
	if rt != nil {
		rt.observe(ctx, pod)
		return
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return
	}
	rt = newPodRuntime(a, pod)
	a.mu.Lock()
	a.pods[pod.UID] = rt
	a.mu.Unlock()
	go rt.start(ctx)
}

// deletePod removes the pod object once its processes are gone, as the
// kubelet does.
func (a *Agent) deletePod(ctx context.Context, pod *corev1.Pod) {
	err := a.cs.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		a.cfg.Log.Error("failed to delete pod", "pod", pod.Namespace+"/"+pod.Name, "err", err)
	}
}

func (a *Agent) forget(uid types.UID) {
	a.mu.Lock()
	delete(a.pods, uid)
	a.mu.Unlock()
}

func (a *Agent) stopAll() {
	a.mu.Lock()
	rts := make([]*podRuntime, 0, len(a.pods))
	for _, rt := range a.pods {
		rts = append(rts, rt)
	}
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, rt := range rts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rt.stop(2 * time.Second)
		}()
	}
	wg.Wait()
}

// heartbeat keeps the Node Ready: status every 10 seconds, and its Lease.
func (a *Agent) heartbeat(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		if err := a.updateNode(ctx); err != nil {
			a.cfg.Log.Error("failed to update node status", "err", err)
		}
		if err := a.renewLease(ctx); err != nil {
			a.cfg.Log.Error("failed to renew node lease", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Agent) updateNode(ctx context.Context) error {
	now := metav1.Now()
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("2"),
		corev1.ResourceMemory: resource.MustParse("16Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	status := corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "LabNodeReady",
			Message: "lab node agent is running", LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: a.cfg.NodeIP}, {Type: corev1.NodeHostName, Address: a.cfg.NodeName}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(a.cfg.KubeletPort)}},
		NodeInfo:        corev1.NodeSystemInfo{KubeletVersion: "v1.36.4-lab", OperatingSystem: "linux", Architecture: "amd64", ContainerRuntimeVersion: "lab://processes"},
	}
	patch, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return err
	}
	_, err = a.cs.CoreV1().Nodes().Patch(ctx, a.cfg.NodeName, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
	return err
}

func (a *Agent) renewLease(ctx context.Context) error {
	leases := a.cs.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Namespace: corev1.NamespaceNodeLease},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity: ptr.To(a.cfg.NodeName), LeaseDurationSeconds: ptr.To[int32](40), RenewTime: &now,
			},
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	l.Spec.RenewTime = &now
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	return err
}
