package runcargs

import (
	"strings"
	"testing"
)

// BenchmarkParse is the argv parse every tardis invocation does before anything else,
// on the command lines containerd's shim, Docker and kubelet's probes send.
func BenchmarkParse(b *testing.B) {
	for _, c := range []struct{ name, argv string }{
		{"state", "--root /run/containerd/runc/k8s.io --log /run/containerd/io.containerd.runtime.v2.task/k8s.io/c1/log.json --log-format json state c1"},
		{"kill", "--root /run/containerd/runc/k8s.io --log /b/log.json --log-format json kill --all c1 15"},
		{"exec", "--root /run/containerd/runc/k8s.io --log /b/log.json --log-format json exec --process /tmp/runc-process123 --detach --pid-file /b/exec.pid c1"},
		{"create", "--root /run/containerd/runc/k8s.io --log /b/log.json --log-format json --systemd-cgroup create --bundle /run/containerd/io.containerd.runtime.v2.task/k8s.io/c1 --pid-file /b/init.pid --console-socket /tmp/pty.sock --no-pivot c1"},
		{"list", "list"},
	} {
		args := strings.Fields(c.argv)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(args); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParseSignal(b *testing.B) {
	for b.Loop() {
		if _, err := ParseSignal("SIGTERM"); err != nil {
			b.Fatal(err)
		}
	}
}
