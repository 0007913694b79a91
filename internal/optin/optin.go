// Package optin reads, from a bundle's config.json, whether a container opted in to tardis,
// its checkpoint key and its network-filesystem path. The runtime's own environment never
// carries the container's variables, so annotations and process.env are the only sources.
package optin

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/afero"
)

// Names a container uses to opt in; README.md documents them.
const (
	AnnotationEnabled   = "dev.tardis.enabled"
	AnnotationKey       = "dev.tardis.key"
	AnnotationNetworkFS = "dev.tardis.networkfs"
	EnvEnabled          = "TARDIS_ENABLED"
	EnvKey              = "TARDIS_KEY"
	EnvNetworkFS        = "TARDIS_NETWORKFS"
)

// ErrUnusable is wrapped when a container opted in with a value tardis will not use.
var ErrUnusable = errors.New("unusable tardis setting")

// Mount is the network-filesystem path: a host directory and where the container sees it.
type Mount struct{ Host, Container string }

func (m *Mount) String() string {
	if m == nil {
		return ""
	}
	return m.Host + ":" + m.Container
}

// Settings is what a bundle asks of tardis.
type Settings struct {
	Enabled   bool
	Key       string
	KeySource string // "annotation", "env", "kubernetes (containerd)", "kubernetes (cri-o)", "container id"
	NetworkFS *Mount
	Rootfs    string // absolute path of the container's root filesystem
}

// Spec is the part of the OCI runtime spec tardis reads.
type Spec struct {
	Process *struct {
		Env []string `json:"env"`
	} `json:"process"`
	Root *struct {
		Path string `json:"path"`
	} `json:"root"`
	Annotations map[string]string `json:"annotations"`
}

// ReadSpec reads and decodes bundle/config.json.
func ReadSpec(fsys afero.Fs, bundle string) (*Spec, error) {
	b, err := afero.ReadFile(fsys, filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("bundle config: %w", err)
	}
	var s Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("bundle config %s: %w", filepath.Join(bundle, "config.json"), err)
	}
	return &s, nil
}

// FromSpec works out the settings of a container with the given id and bundle (absolute).
// A container that did not opt in gets Enabled false and no error. One that opted in with
// an unusable value gets Enabled true and an error wrapping ErrUnusable naming the value.
func FromSpec(s *Spec, bundle, id string) (Settings, error) {
	env := map[string]string{}
	if s.Process != nil {
		for _, kv := range s.Process.Env {
			if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "TARDIS_") {
				env[k] = v
			}
		}
	}
	ann := s.Annotations
	var st Settings
	st.Enabled = truthy(ann[AnnotationEnabled]) || truthy(env[EnvEnabled])
	if !st.Enabled || isSandbox(ann) {
		return Settings{}, nil
	}
	if s.Root != nil && s.Root.Path != "" {
		st.Rootfs = s.Root.Path
		if !filepath.IsAbs(st.Rootfs) {
			st.Rootfs = filepath.Join(bundle, st.Rootfs)
		}
	} else {
		st.Rootfs = filepath.Join(bundle, "rootfs")
	}

	switch {
	case ann[AnnotationKey] != "":
		st.Key, st.KeySource = ann[AnnotationKey], "annotation "+AnnotationKey
	case env[EnvKey] != "":
		st.Key, st.KeySource = env[EnvKey], "env "+EnvKey
	case ann["io.kubernetes.cri.sandbox-namespace"] != "" && ann["io.kubernetes.cri.container-name"] != "":
		st.Key = kubeKey(ann["io.kubernetes.cri.sandbox-namespace"], ann["io.kubernetes.cri.sandbox-name"],
			ann["io.kubernetes.cri.container-name"])
		st.KeySource = "kubernetes (containerd)"
	case ann["io.kubernetes.pod.namespace"] != "" && ann["io.kubernetes.container.name"] != "":
		st.Key = kubeKey(ann["io.kubernetes.pod.namespace"], ann["io.kubernetes.pod.name"],
			ann["io.kubernetes.container.name"])
		st.KeySource = "kubernetes (cri-o)"
	default:
		st.Key, st.KeySource = id, "container id"
	}
	var errs []error
	if err := CheckName(st.Key); err != nil {
		errs = append(errs, fmt.Errorf("%w: checkpoint key from %s: %w", ErrUnusable, st.KeySource, err))
	}

	nfs := ann[AnnotationNetworkFS]
	if nfs == "" {
		nfs = env[EnvNetworkFS]
	}
	if nfs != "" {
		m, err := parseMount(nfs)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: networkfs %q: %w", ErrUnusable, nfs, err))
		}
		st.NetworkFS = m
	}
	return st, errors.Join(errs...)
}

// isSandbox reports a pod's sandbox ("pause") container: pod annotations reach its spec
// too, but it holds no state worth keeping and nothing would ever restore it.
func isSandbox(ann map[string]string) bool {
	return ann["io.kubernetes.cri.container-type"] == "sandbox" ||
		ann["io.kubernetes.cri-o.ContainerType"] == "sandbox"
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

var safeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// MaxName bounds keys and ids used in file names (a file name is at most 255 bytes, and
// tardis adds prefixes and suffixes).
const MaxName = 200

// CheckName accepts only names that are safe as one path element: letters, digits, "_",
// "." and "-", not starting with a punctuation mark, no "..", at most MaxName bytes.
func CheckName(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case len(name) > MaxName:
		return fmt.Errorf("name of %d bytes is longer than %d", len(name), MaxName)
	case !safeName.MatchString(name) || strings.Contains(name, ".."):
		return fmt.Errorf("%q is not a safe name (letters, digits, _ . - only)", name)
	}
	return nil
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
