package optin

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/tardis-runtime/tardis/internal/fsys"

	"github.com/tardis-runtime/tardis/internal/bundle"
)

// benchConfig is a config.json of the size containerd's CRI writes for a Kubernetes
// container: dozens of mounts, env variables, annotations and the linux section.
func benchConfig(b *testing.B, optedIn bool) []byte {
	ann := map[string]string{
		"io.kubernetes.cri.container-type":    "container",
		"io.kubernetes.cri.container-name":    "web",
		"io.kubernetes.cri.sandbox-name":      "web-0",
		"io.kubernetes.cri.sandbox-namespace": "default",
		"io.kubernetes.cri.sandbox-id":        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"io.kubernetes.cri.image-name":        "registry.example.com/team/web:1.2.3",
	}
	if optedIn {
		ann[AnnotationEnabled] = "true"
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=web-0"}
	for i := range 60 {
		env = append(env, fmt.Sprintf("SERVICE_%02d_PORT=tcp://10.96.0.%d:443", i, i))
	}
	var mounts []map[string]any
	for i := range 30 {
		mounts = append(mounts, map[string]any{"destination": fmt.Sprintf("/var/run/secrets/%d", i),
			"type": "bind", "source": fmt.Sprintf("/var/lib/kubelet/pods/p/volumes/v%d", i),
			"options": []string{"rbind", "rprivate", "ro"}})
	}
	var devices []map[string]any
	for i := range 20 {
		devices = append(devices, map[string]any{"allow": false, "type": "c", "major": i, "minor": i, "access": "rwm"})
	}
	spec := map[string]any{
		"ociVersion": "1.1.0",
		"process": map[string]any{"user": map[string]any{"uid": 0, "gid": 0}, "args": []string{"/bin/web", "--port", "8080"},
			"env": env, "cwd": "/", "capabilities": map[string]any{"bounding": []string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"}},
			"oomScoreAdj": 1000},
		"root":        map[string]any{"path": "rootfs"},
		"hostname":    "web-0",
		"mounts":      mounts,
		"annotations": ann,
		"linux": map[string]any{"resources": map[string]any{"devices": devices, "memory": map[string]any{"limit": 1 << 30},
			"cpu": map[string]any{"shares": 1024, "quota": 100000, "period": 100000}},
			"cgroupsPath": "kubepods-besteffort-pod.slice:cri-containerd:0123456789abcdef",
			"namespaces":  []map[string]string{{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network", "path": "/var/run/netns/cni-1"}},
			"maskedPaths": []string{"/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/sys/firmware"}},
	}
	raw, err := json.MarshalIndent(spec, "", "\t")
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// BenchmarkDecide is what tardis does on every create to decide between pass-through and
// its own path: read the bundle's config.json (from disk) and work out the settings.
func BenchmarkDecide(b *testing.B) {
	for _, optedIn := range []bool{false, true} {
		name := "not-opted-in"
		if optedIn {
			name = "opted-in"
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			raw := benchConfig(b, optedIn)
			fsys := fsys.OS{}
			if err := fsys.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				bd, err := bundle.Load(fsys, dir)
				if err != nil {
					b.Fatal(err)
				}
				st, err := Resolve(bd, "c1", "/run/containerd/runc/k8s.io", Policy{})
				if err != nil || st.Enabled != optedIn {
					b.Fatalf("Resolve = %+v, %v", st, err)
				}
			}
		})
	}
}
