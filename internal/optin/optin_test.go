package optin

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func spec(ann map[string]string, env ...string) *Spec {
	s := &Spec{Annotations: ann}
	s.Process = &struct {
		Env []string `json:"env"`
	}{Env: env}
	return s
}

func TestFromSpec(t *testing.T) {
	tests := []struct {
		name string
		spec *Spec
		want Settings
		err  string
	}{
		{"not opted in", spec(nil, "PATH=/bin"), Settings{}, ""},
		{"enabled false", spec(map[string]string{AnnotationEnabled: "false"}, "TARDIS_ENABLED=0"), Settings{}, ""},
		{"annotation, key from id", spec(map[string]string{AnnotationEnabled: "true"}),
			Settings{Enabled: true, Key: "c1", KeySource: "container id", Rootfs: "/b/rootfs"}, ""},
		{"env with key", spec(nil, "TARDIS_ENABLED=1", "TARDIS_KEY=web"),
			Settings{Enabled: true, Key: "web", KeySource: "env TARDIS_KEY", Rootfs: "/b/rootfs"}, ""},
		{"annotation key wins over env", spec(map[string]string{AnnotationEnabled: "yes", AnnotationKey: "a"}, "TARDIS_KEY=b"),
			Settings{Enabled: true, Key: "a", KeySource: "annotation dev.tardis.key", Rootfs: "/b/rootfs"}, ""},
		{"containerd cri names", spec(map[string]string{AnnotationEnabled: "true",
			"io.kubernetes.cri.sandbox-namespace": "ns", "io.kubernetes.cri.sandbox-name": "pod-0",
			"io.kubernetes.cri.container-name": "app"}),
			Settings{Enabled: true, Key: "ns_pod-0_app", KeySource: "kubernetes (containerd)", Rootfs: "/b/rootfs"}, ""},
		{"cri-o names", spec(map[string]string{"io.kubernetes.pod.namespace": "ns",
			"io.kubernetes.pod.name": "p", "io.kubernetes.container.name": "c"}, "TARDIS_ENABLED=true"),
			Settings{Enabled: true, Key: "ns_p_c", KeySource: "kubernetes (cri-o)", Rootfs: "/b/rootfs"}, ""},
		{"containerd pod sandbox", spec(map[string]string{AnnotationEnabled: "true",
			"io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-name": "pod-0"}), Settings{}, ""},
		{"cri-o pod sandbox", spec(map[string]string{AnnotationEnabled: "true",
			"io.kubernetes.cri-o.ContainerType": "sandbox"}), Settings{}, ""},
		{"networkfs", spec(map[string]string{AnnotationEnabled: "1", AnnotationNetworkFS: "/mnt/nfs/x:/data"}),
			Settings{Enabled: true, Key: "c1", KeySource: "container id", Rootfs: "/b/rootfs",
				NetworkFS: &Mount{Host: "/mnt/nfs/x", Container: "/data"}}, ""},
		{"unsafe key", spec(map[string]string{AnnotationEnabled: "true", AnnotationKey: "../x"}), Settings{}, `"../x" is not a safe name`},
		{"key with slash", spec(nil, "TARDIS_ENABLED=1", "TARDIS_KEY=a/b"), Settings{}, "not a safe name"},
		{"key with NUL", spec(map[string]string{AnnotationEnabled: "true", AnnotationKey: "a\x00b"}), Settings{}, "not a safe name"},
		{"dot key", spec(map[string]string{AnnotationEnabled: "true", AnnotationKey: "."}), Settings{}, "not a safe name"},
		{"long key", spec(map[string]string{AnnotationEnabled: "true", AnnotationKey: strings.Repeat("k", 201)}), Settings{}, "longer than 200"},
		{"relative networkfs", spec(map[string]string{AnnotationEnabled: "true", AnnotationNetworkFS: "data:/data"}), Settings{}, "must be absolute"},
		{"networkfs without colon", spec(map[string]string{AnnotationEnabled: "true", AnnotationNetworkFS: "/data"}), Settings{}, "want <host path>"},
		{"networkfs with ..", spec(map[string]string{AnnotationEnabled: "true", AnnotationNetworkFS: "/a/../etc:/data"}), Settings{}, "must be clean"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromSpec(tt.spec, "/b", "c1")
			if tt.err != "" {
				if !errors.Is(err, ErrUnusable) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want ErrUnusable with %q", err, tt.err)
				}
				if !got.Enabled {
					t.Error("an opted-in container with a bad value must still count as opted in")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestRootfsPath(t *testing.T) {
	s := spec(map[string]string{AnnotationEnabled: "true"})
	s.Root = &struct {
		Path string `json:"path"`
	}{Path: "/abs/root"}
	got, _ := FromSpec(s, "/b", "c")
	if got.Rootfs != "/abs/root" {
		t.Errorf("rootfs = %q", got.Rootfs)
	}
	s.Root.Path = "rfs"
	got, _ = FromSpec(s, "/b", "c")
	if got.Rootfs != "/b/rfs" {
		t.Errorf("rootfs = %q", got.Rootfs)
	}
}
