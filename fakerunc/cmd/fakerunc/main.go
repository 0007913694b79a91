// Command fakerunc is the fake runc of the scenario tests, as a program of its own.
package main

import (
	"os"

	"github.com/tardis-runtime/tardis/fakerunc"
)

func main() { os.Exit(fakerunc.Main()) }
