// Package bundle loads, changes and writes a container's OCI bundle configuration
// (<bundle>/config.json): the one place that reads or writes it. What tardis reads of it
// is typed (Spec); everything else in the file is kept as it was, byte for byte per field,
// when tardis writes it back (adding the network-filesystem mount is its only change).
package bundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/tardis-runtime/tardis/internal/fsys"
)

// ConfigName is the bundle's configuration file.
const ConfigName = "config.json"

// Spec is the part of the OCI runtime spec tardis reads.
type Spec struct {
	Process     *Process          `json:"process,omitempty"`
	Root        *Root             `json:"root,omitempty"`
	Mounts      []Mount           `json:"mounts,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Process is the container's process as the spec gives it.
type Process struct {
	Args []string `json:"args,omitempty"`
	Env  []string `json:"env,omitempty"`
	Cwd  string   `json:"cwd"`
	User User     `json:"user"`
}

// User is the process's user.
type User struct {
	UID            uint32   `json:"uid"`
	GID            uint32   `json:"gid"`
	AdditionalGids []uint32 `json:"additionalGids,omitempty"`
}

// Root is the container's root filesystem.
type Root struct {
	Path     string `json:"path"`
	Readonly bool   `json:"readonly,omitempty"`
}

// Mount is one OCI mount.
type Mount struct {
	Destination string   `json:"destination"`
	Type        string   `json:"type,omitempty"`
	Source      string   `json:"source,omitempty"`
	Options     []string `json:"options,omitempty"`
}

// Bundle is a loaded bundle: its directory, the typed view and the whole document.
type Bundle struct {
	Dir  string // absolute
	Spec Spec
	raw  map[string]json.RawMessage
	fs   fsys.FS
}

// Load reads and decodes <dir>/config.json; dir must be absolute.
func Load(fsys fsys.FS, dir string) (*Bundle, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("bundle %q: not an absolute path", dir)
	}
	p := filepath.Join(dir, ConfigName)
	b, err := fsys.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("bundle config: %w", err)
	}
	bd := &Bundle{Dir: dir, fs: fsys}
	if err := json.Unmarshal(b, &bd.raw); err != nil {
		return nil, fmt.Errorf("bundle config %s: %w", p, err)
	}
	if err := json.Unmarshal(b, &bd.Spec); err != nil {
		return nil, fmt.Errorf("bundle config %s: %w", p, err)
	}
	return bd, nil
}

// Rootfs is the absolute path of the container's root filesystem.
func (b *Bundle) Rootfs() string {
	p := "rootfs"
	if b.Spec.Root != nil && b.Spec.Root.Path != "" {
		p = b.Spec.Root.Path
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(b.Dir, p)
	}
	return filepath.Clean(p)
}

// Annotation is the value of an annotation ("" when absent).
func (b *Bundle) Annotation(name string) string { return b.Spec.Annotations[name] }

// HasMountAt reports whether a mount has this destination.
func (b *Bundle) HasMountAt(dest string) bool {
	for _, m := range b.Spec.Mounts {
		if filepath.Clean(m.Destination) == filepath.Clean(dest) {
			return true
		}
	}
	return false
}

// AddMount appends a mount unless one at its destination is already there; it reports
// whether it added one. Save writes the change.
func (b *Bundle) AddMount(m Mount) bool {
	if b.HasMountAt(m.Destination) {
		return false
	}
	b.Spec.Mounts = append(b.Spec.Mounts, m)
	var mounts []json.RawMessage
	if raw, ok := b.raw["mounts"]; ok {
		_ = json.Unmarshal(raw, &mounts) // it decoded into Spec.Mounts above
	}
	nm, _ := json.Marshal(m)
	mounts = append(mounts, nm)
	b.raw["mounts"], _ = json.Marshal(mounts)
	return true
}

// ResolveBindSources replaces the source of every bind mount that is a symlink on the host
// by what it resolves to, and reports the mounts it changed ("dest: old -> new"). runc
// follows such a link when it mounts at create, but CRIU cannot mount it again at restore
// ("Can't remount ... with MS_PRIVATE"): Docker's --init binds /usr/bin/docker-init, a link
// to tini. The container sees the same file either way. Save writes the change.
func (b *Bundle) ResolveBindSources() ([]string, error) {
	var changed []string
	var raw []map[string]json.RawMessage
	if r, ok := b.raw["mounts"]; ok {
		if err := json.Unmarshal(r, &raw); err != nil {
			return nil, fmt.Errorf("bundle config mounts: %w", err)
		}
	}
	for i, m := range b.Spec.Mounts {
		if !isBind(m) || !filepath.IsAbs(m.Source) || i >= len(raw) {
			continue
		}
		real, err := filepath.EvalSymlinks(m.Source)
		if err != nil || real == m.Source {
			continue
		}
		changed = append(changed, fmt.Sprintf("%s: %s -> %s", m.Destination, m.Source, real))
		b.Spec.Mounts[i].Source = real
		raw[i]["source"], _ = json.Marshal(real)
	}
	if len(changed) > 0 {
		b.raw["mounts"], _ = json.Marshal(raw)
	}
	return changed, nil
}

func isBind(m Mount) bool {
	if m.Type == "bind" {
		return true
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}

// Save writes config.json back atomically (a temporary file renamed over it), keeping its
// mode and every field tardis does not know.
func (b *Bundle) Save() error {
	p := filepath.Join(b.Dir, ConfigName)
	out, err := json.MarshalIndent(b.raw, "", "\t")
	if err != nil {
		return fmt.Errorf("bundle config: %w", err)
	}
	info, err := b.fs.Stat(p)
	if err != nil {
		return fmt.Errorf("bundle config: %w", err)
	}
	tmp := p + ".tardis-tmp"
	if err := b.fs.WriteFile(tmp, out, info.Mode().Perm()); err != nil {
		return errors.Join(fmt.Errorf("bundle config: %w", err), b.fs.Remove(tmp))
	}
	if err := b.fs.Rename(tmp, p); err != nil {
		return errors.Join(fmt.Errorf("bundle config: %w", err), b.fs.Remove(tmp))
	}
	return nil
}
