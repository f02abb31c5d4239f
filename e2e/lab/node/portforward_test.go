package node

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// TestPortForward drives the lab's port-forward API with client-go's
// port-forwarder, as the API server relays it: two connections through one
// forward each reach the pod's port, and a pod that is not on the node is
// refused.
func TestPortForward(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				_, _ = io.WriteString(c, "pod says "+line)
			}()
		}
	}()
	_, echoPort, _ := net.SplitHostPort(echo.Addr().String())

	a := New(Config{NodeName: "n", NodeIP: "127.0.0.1", Log: slog.New(slog.DiscardHandler)}, nil)
	a.pods["u1"] = &podRuntime{pod: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "relay", UID: "u1"}}, ip: "127.0.0.1"}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /portForward/{namespace}/{pod}", a.portForward)
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()

	forward := func(pod string) (*portforward.PortForwarder, chan error, error) {
		transport, upgrader, err := spdy.RoundTripperFor(&rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
		if err != nil {
			return nil, nil, err
		}
		u, _ := url.Parse(srv.URL + "/portForward/kube-system/" + pod)
		dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
		stop, ready := make(chan struct{}), make(chan struct{})
		t.Cleanup(func() { close(stop) })
		fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + echoPort}, stop, ready, io.Discard, io.Discard)
		if err != nil {
			return nil, nil, err
		}
		errc := make(chan error, 1)
		go func() { errc <- fw.ForwardPorts() }()
		select {
		case <-ready:
			return fw, errc, nil
		case err := <-errc:
			return nil, nil, err
		}
	}

	fw, _, err := forward("relay")
	if err != nil {
		t.Fatalf("port-forward to a pod on the node: %v", err)
	}
	ports, err := fw.GetPorts()
	if err != nil {
		t.Fatal(err)
	}
	local := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local)))
	for i := range 2 {
		c, err := net.Dial("tcp", local)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, "hello "+strconv.Itoa(i)+"\n")
		got, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if want := "pod says hello " + strconv.Itoa(i) + "\n"; got != want || err != nil {
			t.Errorf("connection %d through the forward: got %q (%v), want %q", i, got, err, want)
		}
	}

	if _, _, err := forward("elsewhere"); err == nil {
		t.Error("port-forward to a pod that is not on the node was accepted")
	}
}
