package main

import "fmt"

// memhogSource is the test application the checkpoint and restore cases run in their
// containers (built static with CGO_ENABLED=0 and copied into the rootfs). It allocates
// and touches -mib MiB (a non-zero byte in every page, so that CRIU dumps each page), then
// optionally busies one CPU for -warm (an application warming up), prints "ready", and
// then sleeps, printing "tick" every -tick when asked (so that a restored copy shows it
// runs on).
const memhogSource = `package main

import (
	"flag"
	"os"
	"time"
)

var mem []byte

func main() {
	mib := flag.Int("mib", 64, "MiB to allocate and touch")
	warm := flag.Duration("warm", 0, "busy phase before ready")
	tick := flag.Duration("tick", 0, "print tick this often after ready (0: never)")
	flag.Parse()
	mem = make([]byte, *mib<<20)
	for i := 0; i < len(mem); i += 4096 {
		mem[i] = byte(i>>12) | 1
	}
	if *warm > 0 {
		x := uint64(1)
		for end := time.Now().Add(*warm); time.Now().Before(end); {
			for j := 0; j < 100000; j++ {
				x = x*6364136223846793005 + 1442695040888963407
			}
		}
		if len(mem) > 0 {
			mem[1] = byte(x)
		}
	}
	os.Stdout.WriteString("ready\n")
	for *tick > 0 {
		time.Sleep(*tick)
		if _, err := os.Stdout.WriteString("tick\n"); err != nil {
			os.Exit(1)
		}
	}
	for {
		time.Sleep(time.Hour)
	}
}
`

// floorSource is the cheapest possible Go wrapper around runc: it does nothing but exec
// it with the same argv and environment. Whatever a Go runtime costs to start (and a Go
// binary to be mapped) is in it; anything tardis adds on top is tardis's own.
func floorSource(runc string) string {
	return fmt.Sprintf(`package main

import (
	"os"
	"syscall"
)

func main() {
	const runc = %q
	err := syscall.Exec(runc, append([]string{runc}, os.Args[1:]...), os.Environ())
	os.Stderr.WriteString("exec-floor: " + err.Error() + "\n")
	os.Exit(125)
}
`, runc)
}

const tinyGoMod = "module benchprog\n\ngo 1.22\n"
