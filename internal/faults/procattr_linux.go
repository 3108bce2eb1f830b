package faults

import "syscall"

// procAttr makes a node die with the test process, even when the test
// binary itself is killed (a test timeout), so no node outlives a run.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
