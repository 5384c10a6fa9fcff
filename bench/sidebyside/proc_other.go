//go:build !linux

package sidebyside

import "syscall"

// childSysProcAttr: without Pdeathsig, a child exits when its stdin reaches
// EOF (the orchestrator died) or after childMaxLife.
func childSysProcAttr() *syscall.SysProcAttr { return nil }
