package front

import "syscall"

// reusePort sets SO_REUSEPORT on the socket c (the syscall package has no
// name for it on Linux: 15).
func reusePort(c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, 0xf, 1)
	}); err != nil {
		return err
	}
	return serr
}
