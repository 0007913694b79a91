// Command tardis is an OCI runtime that speaks runc's command line, runs the real runc
// underneath, and lets opted-in containers outlive their own deletion (see README.md).
package main

import (
	"os"

	"github.com/tardis-runtime/tardis/internal/tardis"
)

func main() { os.Exit(tardis.Main(tardis.OS())) }
