//go:build !linux

package front

// soReusePort is SO_REUSEPORT on the BSDs and macOS.
const soReusePort = 0x200
