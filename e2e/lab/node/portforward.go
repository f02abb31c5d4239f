package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
)

// The kubelet's port-forward API, as much of it as `kubectl port-forward`
// and client-go's portforward package use through the API server: POST
// /portForward/NAMESPACE/POD, upgraded to SPDY; each forwarded connection
// is a pair of streams (error, data) with the same requestID header, and
// the data stream is joined to the pod's port. The API server reaches it at
// the Node's InternalIP and status.daemonEndpoints.kubeletEndpoint.port; it
// does not check the certificate without --kubelet-certificate-authority.

const portForwardProtocol = "portforward.k8s.io"

// servePortForward serves the port-forward API on addr until ctx ends.
func (a *Agent) servePortForward(ctx context.Context, addr string) error {
	cert, err := selfSigned(a.cfg.NodeName, a.cfg.NodeIP)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("failed to listen for port-forwards: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /portForward/{namespace}/{pod}", a.portForward)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// podIP is the address of a running pod on this node.
func (a *Agent) podIP(namespace, name string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range a.pods {
		if p.pod.Namespace == namespace && p.pod.Name == name {
			p.mu.Lock()
			ip := p.ip
			p.mu.Unlock()
			return ip, ip != ""
		}
	}
	return "", false
}

func (a *Agent) portForward(w http.ResponseWriter, req *http.Request) {
	ns, name := req.PathValue("namespace"), req.PathValue("pod")
	ip, ok := a.podIP(ns, name)
	if !ok {
		http.Error(w, fmt.Sprintf("pod %s/%s is not running on this node", ns, name), http.StatusNotFound)
		return
	}
	if _, err := httpstream.Handshake(req, w, []string{portForwardProtocol}); err != nil {
		return // Handshake wrote the error
	}
	streams := make(chan httpstream.Stream, 4)
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, req, func(s httpstream.Stream, _ <-chan struct{}) error {
		switch s.Headers().Get(corev1.StreamType) {
		case corev1.StreamTypeData, corev1.StreamTypeError:
		default:
			return fmt.Errorf("invalid %s header %q", corev1.StreamType, s.Headers().Get(corev1.StreamType))
		}
		if _, err := strconv.ParseUint(s.Headers().Get(corev1.PortHeader), 10, 16); err != nil {
			return fmt.Errorf("invalid %s header %q", corev1.PortHeader, s.Headers().Get(corev1.PortHeader))
		}
		streams <- s
		return nil
	})
	if conn == nil {
		return // UpgradeResponse wrote the error
	}
	defer conn.Close()
	conn.SetIdleTimeout(4 * time.Hour)
	a.cfg.Log.Info("port-forward", "pod", ns+"/"+name, "ip", ip)
	pairs := map[string]*streamPair{}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-conn.CloseChan():
			return
		case <-req.Context().Done():
			return
		case s := <-streams:
			id := s.Headers().Get(corev1.PortForwardRequestIDHeader)
			p := pairs[id]
			if p == nil {
				p = &streamPair{}
				pairs[id] = p
			}
			if s.Headers().Get(corev1.StreamType) == corev1.StreamTypeError {
				p.errs = s
			} else {
				p.data = s
			}
			if p.errs != nil && p.data != nil {
				delete(pairs, id)
				wg.Add(1)
				go func() {
					defer wg.Done()
					p.forward(ip)
				}()
			}
		}
	}
}

type streamPair struct{ errs, data httpstream.Stream }

// forward joins the data stream to the pod's port; a failure is written to
// the error stream, where the client reads it.
func (p *streamPair) forward(ip string) {
	defer p.errs.Close()
	defer p.data.Close()
	port := p.data.Headers().Get(corev1.PortHeader)
	c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, port), 5*time.Second)
	if err != nil {
		fmt.Fprintf(p.errs, "failed to connect to %s:%s: %v", ip, port, err)
		return
	}
	defer c.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(c, p.data)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		close(done)
	}()
	_, _ = io.Copy(p.data, c)
	<-done
}

// selfSigned is the node's serving certificate.
func selfSigned(name, ip string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if a := net.ParseIP(strings.TrimSpace(ip)); a != nil {
		tmpl.IPAddresses = []net.IP{a}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
