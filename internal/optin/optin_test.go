package optin

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tardis-runtime/tardis/internal/fsys/fsystest"

	"github.com/tardis-runtime/tardis/internal/bundle"
)

// load makes a bundle at /b whose config.json holds these annotations and env.
func load(t *testing.T, ann map[string]string, env ...string) *bundle.Bundle {
	t.Helper()
	spec := map[string]any{"process": map[string]any{"args": []string{"sh"}, "env": env, "cwd": "/"},
		"annotations": ann}
	raw, _ := json.Marshal(spec)
	b, err := bundle.Load(fsystest.Files{"/b/config.json": string(raw)}, "/b")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var sh = Identity{Args: []string{"sh"}, Cwd: "/"}

func TestResolve(t *testing.T) {
	nfsPolicy := Policy{NetworkFSRoots: []string{"/mnt/nfs"}}
	tests := []struct {
		name   string
		ann    map[string]string
		env    []string
		policy Policy
		want   Settings
		err    string
	}{
		{"not opted in", nil, []string{"PATH=/bin"}, Policy{}, Settings{}, ""},
		{"enabled false", map[string]string{AnnotationEnabled: "false"}, []string{"TARDIS_ENABLED=0"}, Policy{}, Settings{}, ""},
		{"annotation, key from id", map[string]string{AnnotationEnabled: "true"}, nil, Policy{},
			Settings{Enabled: true, Key: "c1", KeySource: "container id", Tenant: "default", Rootfs: "/b/rootfs", Identity: sh}, ""},
		{"env with key", nil, []string{"TARDIS_ENABLED=1", "TARDIS_KEY=web"}, Policy{},
			Settings{Enabled: true, Key: "web", KeySource: "env TARDIS_KEY", Tenant: "default", Rootfs: "/b/rootfs", Identity: sh}, ""},
		{"annotation key wins over env", map[string]string{AnnotationEnabled: "yes", AnnotationKey: "a"}, []string{"TARDIS_KEY=b"}, Policy{},
			Settings{Enabled: true, Key: "a", KeySource: "annotation dev.tardis.key", Tenant: "default", Rootfs: "/b/rootfs", Identity: sh}, ""},
		{"containerd cri names: the namespace is the tenant", map[string]string{AnnotationEnabled: "true",
			"io.kubernetes.cri.sandbox-namespace": "ns", "io.kubernetes.cri.sandbox-name": "pod-0",
			"io.kubernetes.cri.container-name": "app", "io.kubernetes.cri.image-name": "docker.io/library/busybox:1.36"}, nil, Policy{},
			Settings{Enabled: true, Key: "ns_pod-0_app", KeySource: "kubernetes (containerd)", Tenant: "k8s-ns", Rootfs: "/b/rootfs",
				Identity: Identity{Image: "docker.io/library/busybox:1.36", Args: []string{"sh"}, Cwd: "/"}}, ""},
		{"an explicit key stays in the namespace's tenant", map[string]string{AnnotationEnabled: "true", AnnotationKey: "db_store-0_counter",
			"io.kubernetes.cri.sandbox-namespace": "evil", "io.kubernetes.cri.container-name": "app"}, nil, Policy{},
			Settings{Enabled: true, Key: "db_store-0_counter", KeySource: "annotation dev.tardis.key", Tenant: "k8s-evil", Rootfs: "/b/rootfs", Identity: sh}, ""},
		{"cri-o names", map[string]string{"io.kubernetes.pod.namespace": "ns",
			"io.kubernetes.pod.name": "p", "io.kubernetes.container.name": "c", "io.kubernetes.cri-o.ImageName": "quay.io/x:1"}, []string{"TARDIS_ENABLED=true"}, Policy{},
			Settings{Enabled: true, Key: "ns_p_c", KeySource: "kubernetes (cri-o)", Tenant: "k8s-ns", Rootfs: "/b/rootfs",
				Identity: Identity{Image: "quay.io/x:1", Args: []string{"sh"}, Cwd: "/"}}, ""},
		{"the node's own tenant", map[string]string{AnnotationEnabled: "true"}, nil, Policy{Tenant: "team-a"},
			Settings{Enabled: true, Key: "c1", KeySource: "container id", Tenant: "team-a", Rootfs: "/b/rootfs", Identity: sh}, ""},
		{"tenant by runc root", map[string]string{AnnotationEnabled: "true"}, nil, Policy{TenantByRoot: true},
			Settings{Enabled: true, Key: "c1", KeySource: "container id", Tenant: "root-58ff279f-default", Rootfs: "/b/rootfs", Identity: sh}, ""},
		{"containerd pod sandbox", map[string]string{AnnotationEnabled: "true",
			"io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-name": "pod-0"}, nil, Policy{}, Settings{}, ""},
		{"cri-o pod sandbox", map[string]string{AnnotationEnabled: "true",
			"io.kubernetes.cri-o.ContainerType": "sandbox"}, nil, Policy{}, Settings{}, ""},
		{"networkfs under an allowed root", map[string]string{AnnotationEnabled: "1", AnnotationNetworkFS: "/mnt/nfs/x:/data"}, nil, nfsPolicy,
			Settings{Enabled: true, Key: "c1", KeySource: "container id", Tenant: "default", Rootfs: "/b/rootfs", Identity: sh,
				NetworkFS: &Mount{Host: "/mnt/nfs/x", Container: "/data"}}, ""},
		{"networkfs with no roots allowed", map[string]string{AnnotationEnabled: "1", AnnotationNetworkFS: "/mnt/nfs/x:/data"}, nil, Policy{}, Settings{}, "networkfs_roots is empty"},
		{"the host's / from env", nil, []string{"TARDIS_ENABLED=1", "TARDIS_NETWORKFS=/:/host"}, nfsPolicy, Settings{}, "/ is not under networkfs_roots"},
		{"a sibling of the root", map[string]string{AnnotationEnabled: "1", AnnotationNetworkFS: "/mnt/nfs2:/data"}, nil, nfsPolicy, Settings{}, "not under"},
		{"a CRIU configuration named by the spec", map[string]string{AnnotationEnabled: "true", "org.criu.config": "/var/lib/x/rootfs/evil.conf"}, nil, Policy{}, Settings{}, `annotation org.criu.config="/var/lib/x/rootfs/evil.conf" names a CRIU configuration on the host`},
		{"unsafe key", map[string]string{AnnotationEnabled: "true", AnnotationKey: "../x"}, nil, Policy{}, Settings{}, `"../x" is not a safe name`},
		{"key with slash", nil, []string{"TARDIS_ENABLED=1", "TARDIS_KEY=a/b"}, Policy{}, Settings{}, "not a safe name"},
		{"key with NUL", map[string]string{AnnotationEnabled: "true", AnnotationKey: "a\x00b"}, nil, Policy{}, Settings{}, "not a safe name"},
		{"dot key", map[string]string{AnnotationEnabled: "true", AnnotationKey: "."}, nil, Policy{}, Settings{}, "not a safe name"},
		{"long key", map[string]string{AnnotationEnabled: "true", AnnotationKey: strings.Repeat("k", 201)}, nil, Policy{}, Settings{}, "longer than 200"},
		{"relative networkfs", map[string]string{AnnotationEnabled: "true", AnnotationNetworkFS: "data:/data"}, nil, nfsPolicy, Settings{}, "must be absolute"},
		{"networkfs without colon", map[string]string{AnnotationEnabled: "true", AnnotationNetworkFS: "/data"}, nil, nfsPolicy, Settings{}, "want <host path>"},
		{"networkfs with ..", map[string]string{AnnotationEnabled: "true", AnnotationNetworkFS: "/mnt/nfs/../../etc:/data"}, nil, nfsPolicy, Settings{}, "must be clean"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(load(t, tt.ann, tt.env...), "c1", "/run/runc", tt.policy)
			if tt.err != "" {
				if !(errors.Is(err, ErrUnusable) || errors.Is(err, ErrNotAllowed)) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want ErrUnusable or ErrNotAllowed with %q", err, tt.err)
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

func TestIdentityDiff(t *testing.T) {
	a := Identity{Image: "web:1", Args: []string{"/bin/web"}, Cwd: "/", UID: 0, GID: 0}
	if d := a.Diff(a); d != nil {
		t.Errorf("same identity differs: %v", d)
	}
	b := a
	b.Image, b.Args, b.UID = "web:2", []string{"/bin/sh"}, 1000
	d := a.Diff(b)
	if len(d) != 3 || !strings.Contains(d[0], `image "web:1", this container "web:2"`) || !strings.Contains(d[2], "user 0:0[], this container 1000:0[]") {
		t.Errorf("diff = %q", d)
	}
}

// TestResolveHost: a host path is resolved on disk without ever leaving its allowed root.
func TestResolveHost(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "nfs")
	for _, d := range []string{"nfs/a/data", "nfs/b", "secret"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"nfs/inside":   "a/data",         // relative, stays inside: fine
		"nfs/abs":      "/etc",           // absolute: out
		"nfs/up":       "../secret",      // climbs out
		"nfs/b/upup":   "../../secret",   // climbs out from deeper
		"nfs/rootlink": dir + "/nfs/a",   // absolute, even to inside: refused (RESOLVE_BENEATH)
		"nfs/a/loop":   "../../nfs/a/..", // climbs out of the root and back in
	}
	for l, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, l)); err != nil {
			t.Fatal(err)
		}
	}
	roots := []string{root}
	for _, ok := range []struct{ host, want string }{
		{root + "/a/data", root + "/a/data"},
		{root + "/inside", root + "/a/data"},
		{root, root},
	} {
		got, err := ResolveHost(ok.host, roots)
		if err != nil || got != ok.want {
			t.Errorf("ResolveHost(%s) = %q, %v; want %s", ok.host, got, err, ok.want)
		}
	}
	for _, bad := range []string{root + "/abs", root + "/up", root + "/b/upup", root + "/rootlink", root + "/a/loop", dir + "/secret", "/", root + "/missing"} {
		if got, err := ResolveHost(bad, roots); err == nil {
			t.Errorf("ResolveHost(%s) = %q, want refused", bad, got)
		}
	}
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"a", "Z9", "db_store-0_counter", "k8s-default", "a.b", "x-", "9"} {
		if err := CheckName(ok); err != nil {
			t.Errorf("CheckName(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "a..b", "-a", "_a", ".a", "a/b", "a b", "a\x00", "é", "a\n",
		strings.Repeat("a", MaxName+1)} {
		if CheckName(bad) == nil {
			t.Errorf("CheckName(%q) = nil, want an error", bad)
		}
	}
}
