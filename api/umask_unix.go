//go:build unix

package api

import "syscall"

func umask(m int) int { return syscall.Umask(m) }

// maxSocketPath is the size of sun_path: a unix socket path must be
// shorter (108 on Linux, 104 on the BSDs and macOS).
const maxSocketPath = len(syscall.RawSockaddrUnix{}.Path)
