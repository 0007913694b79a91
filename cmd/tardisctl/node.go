package main

import (
	"context"

	"github.com/tardis-runtime/tardis/internal/runc"
	"github.com/tardis-runtime/tardis/internal/store"
)

// thisNode collects the facts a restore checks, as tardis does (runc's version is recorded
// in manifests but not checked, so it is not asked for).
func thisNode(c *cli) store.Node {
	return store.ThisNode("/proc/cpuinfo", "", runc.Criu{Path: c.cfg.Criu}.Version(context.Background()))
}
