// Package zones reads the node-cache's zones file: server blocks users add,
// each a domain forwarded to its own servers with its own forward settings.
//
// It only reads and checks the file's shape and values, as the kube-dns
// ConfigMap's stub domains are read; the rules a zone shares with them
// (outside the cluster domain, each domain once) are corefile.Config's. It
// never watches or renders, and no text in the file reaches the Corefile
// but a validated domain, addresses and the forward settings' known words.
package zones
