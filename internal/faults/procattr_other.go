//go:build !linux

package faults

import "syscall"

// procAttr: without Linux's parent-death signal, nodes are killed only by
// the test's cleanup.
func procAttr() *syscall.SysProcAttr { return nil }
