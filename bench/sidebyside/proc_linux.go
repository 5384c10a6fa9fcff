package sidebyside

import "syscall"

// childSysProcAttr makes the kernel kill a child when the orchestrator
// dies, so that no benchmark process outlives it.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
