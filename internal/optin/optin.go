// Package optin decides, from a container's bundle and the node's policy, whether the
// container opted in to tardis, its checkpoint key and tenant, what it runs (its identity),
// and which network-filesystem path it gets. The runtime's own environment never carries
// the container's variables, so annotations and process.env are the only sources.
//
// Everything in the spec is written by whoever may create containers: untrusted. It may opt
// in and name a key; it decides nothing on the host beyond what the node's Policy allows.
package optin

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tardis-runtime/tardis/internal/bundle"
)

// Names a container uses to opt in; README.md documents them.
const (
	AnnotationEnabled   = "dev.tardis.enabled"
	AnnotationKey       = "dev.tardis.key"
	AnnotationNetworkFS = "dev.tardis.networkfs"
	EnvEnabled          = "TARDIS_ENABLED"
	EnvKey              = "TARDIS_KEY"
	EnvNetworkFS        = "TARDIS_NETWORKFS"

	// AnnotationCriuConfig is runc's: the CRIU configuration file of the container's
	// checkpoints and restores. An opted-in container may not set it (see Resolve).
	AnnotationCriuConfig = "org.criu.config"
)

// The annotations the CRI runtimes write themselves, after (and over) any annotation a pod
// passes through, which a pod's own annotations therefore cannot set.
const (
	criNamespace     = "io.kubernetes.cri.sandbox-namespace" // containerd
	criPod           = "io.kubernetes.cri.sandbox-name"
	criContainer     = "io.kubernetes.cri.container-name"
	criContainerType = "io.kubernetes.cri.container-type"
	criImage         = "io.kubernetes.cri.image-name"
	crioNamespace    = "io.kubernetes.pod.namespace" // CRI-O
	crioPod          = "io.kubernetes.pod.name"
	crioContainer    = "io.kubernetes.container.name"
	crioType         = "io.kubernetes.cri-o.ContainerType"
	crioImage        = "io.kubernetes.cri-o.ImageName"
)

// ErrUnusable is wrapped when a container opted in with a value tardis will not use.
var ErrUnusable = errors.New("unusable tardis setting")

// ErrNotAllowed is wrapped when a container asks for a host path the node does not allow.
var ErrNotAllowed = errors.New("not allowed by the node configuration")

// Policy is what the node's administrator decides (the configuration): trusted.
type Policy struct {
	// NetworkFSRoots are the host directories under which a container may name its
	// network-filesystem path; none means no host path is allowed.
	NetworkFSRoots []string
	// Tenant is the tenant of containers outside Kubernetes.
	Tenant string
	// TenantByRoot makes the runc root part of every tenant, so that containers of
	// different container managers (containerd namespaces, Docker, Podman) never share one.
	TenantByRoot bool
}

// DefaultTenant is the tenant of containers outside Kubernetes unless configured otherwise.
const DefaultTenant = "default"

// Mount is the network-filesystem path: a host directory and where the container sees it.
type Mount struct{ Host, Container string }

func (m *Mount) String() string {
	if m == nil {
		return ""
	}
	return m.Host + ":" + m.Container
}

// Settings is what a bundle asks of tardis, as the node's policy allows it.
type Settings struct {
	Enabled   bool
	Key       string
	KeySource string // "annotation dev.tardis.key", "env TARDIS_KEY", "kubernetes (containerd)", "kubernetes (cri-o)", "container id"
	Tenant    string
	NetworkFS *Mount
	Rootfs    string   // absolute path of the container's root filesystem
	Identity  Identity // what the container runs
}

// Resolve works out the settings of the container id in bundle b under runc root root. A
// container that did not opt in gets Enabled false and no error. One that opted in with an
// unusable value gets Enabled true and an error wrapping ErrUnusable naming the value; a
// network-filesystem path outside the allowed roots is an error wrapping ErrNotAllowed.
func Resolve(b *bundle.Bundle, id, root string, p Policy) (Settings, error) {
	env := map[string]string{}
	if b.Spec.Process != nil {
		for _, kv := range b.Spec.Process.Env {
			if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "TARDIS_") {
				env[k] = v
			}
		}
	}
	ann := b.Spec.Annotations
	if !(truthy(ann[AnnotationEnabled]) || truthy(env[EnvEnabled])) || isSandbox(ann) {
		return Settings{}, nil
	}
	st := Settings{Enabled: true, Rootfs: b.Rootfs(), Identity: identityOf(b)}
	switch {
	case ann[AnnotationKey] != "":
		st.Key, st.KeySource = ann[AnnotationKey], "annotation "+AnnotationKey
	case env[EnvKey] != "":
		st.Key, st.KeySource = env[EnvKey], "env "+EnvKey
	case ann[criNamespace] != "" && ann[criContainer] != "":
		st.Key = kubeKey(ann[criNamespace], ann[criPod], ann[criContainer])
		st.KeySource = "kubernetes (containerd)"
	case ann[crioNamespace] != "" && ann[crioContainer] != "":
		st.Key = kubeKey(ann[crioNamespace], ann[crioPod], ann[crioContainer])
		st.KeySource = "kubernetes (cri-o)"
	default:
		st.Key, st.KeySource = id, "container id"
	}
	var errs []error
	if err := CheckName(st.Key); err != nil {
		errs = append(errs, fmt.Errorf("%w: checkpoint key from %s: %w", ErrUnusable, st.KeySource, err))
	}
	var err error
	if st.Tenant, err = tenantOf(ann, root, p); err != nil {
		errs = append(errs, err)
	}
	// runc hands CRIU the configuration file this annotation names, and CRIU runs the
	// action scripts it lists, as root on the host, during every checkpoint and restore that
	// tardis runs for the container: the spec would be deciding what runs on the host.
	if v, ok := ann[AnnotationCriuConfig]; ok {
		errs = append(errs, fmt.Errorf("%w: annotation %s=%q names a CRIU configuration on the host", ErrNotAllowed, AnnotationCriuConfig, v))
	}
	nfs := ann[AnnotationNetworkFS]
	if nfs == "" {
		nfs = env[EnvNetworkFS]
	}
	if nfs != "" {
		m, err := parseMount(nfs)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: networkfs %q: %w", ErrUnusable, nfs, err))
		} else if err := allowed(m.Host, p.NetworkFSRoots); err != nil {
			errs = append(errs, fmt.Errorf("networkfs %q: %w", nfs, err))
		} else {
			st.NetworkFS = m
		}
	}
	return st, errors.Join(errs...)
}

// tenantOf is the container's tenant: its Kubernetes namespace where the CRI runtime
// names one, else the node's tenant; with TenantByRoot, prefixed by its runc root.
func tenantOf(ann map[string]string, root string, p Policy) (string, error) {
	t := p.Tenant
	if t == "" {
		t = DefaultTenant
	}
	ns := ann[criNamespace]
	if ns == "" {
		ns = ann[crioNamespace]
	}
	if ns != "" {
		t = "k8s-" + ns
	}
	if p.TenantByRoot {
		sum := sha256.Sum256([]byte(filepath.Clean(root)))
		t = "root-" + hex.EncodeToString(sum[:4]) + "-" + t
	}
	if err := CheckName(t); err != nil {
		return "", fmt.Errorf("%w: tenant: %w", ErrUnusable, err)
	}
	return t, nil
}

// allowed checks, by its words, that host is one of the allowed roots or under one. The
// path is also resolved on disk, symlinks included, before it is mounted (ResolveHost).
func allowed(host string, roots []string) error {
	if len(roots) == 0 {
		return fmt.Errorf("%w: no host path may be mounted (networkfs_roots is empty)", ErrNotAllowed)
	}
	for _, r := range roots {
		if within(host, r) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is not under networkfs_roots %v", ErrNotAllowed, host, roots)
}

func within(path, root string) bool {
	root = filepath.Clean(root)
	return path == root || strings.HasPrefix(path, strings.TrimSuffix(root, "/")+"/")
}

// isSandbox reports a pod's sandbox ("pause") container: pod annotations reach its spec
// too, but it holds no state worth keeping and nothing would ever restore it.
func isSandbox(ann map[string]string) bool {
	return ann[criContainerType] == "sandbox" || ann[crioType] == "sandbox"
}

// kubeKey joins Kubernetes names, which are DNS labels and so never contain "_".
func kubeKey(namespace, pod, container string) string {
	return namespace + "_" + pod + "_" + container
}

func truthy(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

// MaxName bounds keys, tenants and ids used in file names (a file name is at most 255
// bytes, and tardis adds prefixes and suffixes).
const MaxName = 200

// CheckName accepts only names that are safe as one path element: letters, digits, "_",
// "." and "-", not starting with a punctuation mark, no "..", at most MaxName bytes.
// Every key, tenant, claim owner and container id passes it before it names anything.
func CheckName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case len(name) > MaxName:
		return fmt.Errorf("name of %d bytes is longer than %d", len(name), MaxName)
	case !safeName(name):
		return fmt.Errorf("%q is not a safe name (letters, digits, _ . - only)", name)
	}
	return nil
}

// safeName: letters and digits, then "_", "." and "-" too, and no "..". Written out
// rather than as a regular expression: this package is linked into every runc call, and a
// compiled expression costs each of them its start-up.
func safeName(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return s != "" && !strings.Contains(s, "..")
}

func parseMount(v string) (*Mount, error) {
	host, ctr, ok := strings.Cut(v, ":")
	if !ok || host == "" || ctr == "" {
		return nil, errors.New("want <host path>:<path in container>")
	}
	if !filepath.IsAbs(host) || !filepath.IsAbs(ctr) {
		return nil, errors.New("both paths must be absolute")
	}
	if filepath.Clean(host) != host || filepath.Clean(ctr) != ctr {
		return nil, errors.New("paths must be clean (no .., //, or trailing /)")
	}
	return &Mount{Host: host, Container: ctr}, nil
}

// Identity is what a container runs: what a fresh start of it would run. A checkpoint
// records it; a container whose identity differs is not restored from it. It holds no
// host paths (two nodes see one image under different snapshot paths).
type Identity struct {
	Image          string   `json:"image,omitempty"` // as the CRI runtime names it
	Args           []string `json:"args"`
	Cwd            string   `json:"cwd"`
	UID            uint32   `json:"uid"`
	GID            uint32   `json:"gid"`
	AdditionalGids []uint32 `json:"additional_gids,omitempty"`
}

func identityOf(b *bundle.Bundle) Identity {
	id := Identity{Image: b.Annotation(criImage)}
	if id.Image == "" {
		id.Image = b.Annotation(crioImage)
	}
	if p := b.Spec.Process; p != nil {
		id.Args, id.Cwd = slices.Clone(p.Args), p.Cwd
		id.UID, id.GID = p.User.UID, p.User.GID
		id.AdditionalGids = slices.Clone(p.User.AdditionalGids)
	}
	return id
}

// Diff names each way in which other (the container being created) differs from id (what
// the checkpoint ran); nil when they are the same.
func (id Identity) Diff(other Identity) []string {
	var d []string
	if id.Image != other.Image {
		d = append(d, fmt.Sprintf("image %q, this container %q", id.Image, other.Image))
	}
	if !slices.Equal(id.Args, other.Args) {
		d = append(d, fmt.Sprintf("args %q, this container %q", id.Args, other.Args))
	}
	if id.Cwd != other.Cwd {
		d = append(d, fmt.Sprintf("cwd %q, this container %q", id.Cwd, other.Cwd))
	}
	if id.UID != other.UID || id.GID != other.GID || !slices.Equal(id.AdditionalGids, other.AdditionalGids) {
		d = append(d, fmt.Sprintf("user %d:%d%v, this container %d:%d%v", id.UID, id.GID, id.AdditionalGids,
			other.UID, other.GID, other.AdditionalGids))
	}
	return d
}
