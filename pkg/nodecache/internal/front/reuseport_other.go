//go:build !linux

package front

import (
	"errors"
	"syscall"
)

// reusePort: several UDP sockets on one address are built for Linux only.
func reusePort(syscall.RawConn) error {
	return errors.New("more than one UDP socket per address needs Linux (SO_REUSEPORT)")
}
