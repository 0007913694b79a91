package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tardis-runtime/tardis/internal/criuimg"
)

// ErrInvalid is wrapped by every reason a checkpoint cannot be restored here.
var ErrInvalid = errors.New("checkpoint not restorable")

// Manifest describes a checkpoint; README.md documents it.
type Manifest struct {
	Version     int       `json:"version"`
	Key         string    `json:"key"`
	ContainerID string    `json:"container_id"`
	Created     time.Time `json:"created"`
	Node        Node      `json:"node"`
	// Rootfs says how the container's files were saved: "overlay" (the upper directory's
	// changes are in rootfs.tar) or "in-place" (a plain directory rootfs, used as it is).
	Rootfs      string             `json:"rootfs"`
	RootfsStats any                `json:"rootfs_stats,omitempty"`
	NetworkFS   string             `json:"networkfs,omitempty"`
	Files       []File             `json:"files"`
	DumpStats   *criuimg.DumpStats `json:"dump_stats,omitempty"`
	Timings     map[string]float64 `json:"timings_ms,omitempty"`
}

// File is one file of a checkpoint, relative to its directory.
type File struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
}

// Node is what a restoring node must match.
type Node struct {
	Name        string   `json:"name"`
	Kernel      string   `json:"kernel"`
	Arch        string   `json:"arch"`
	RuncVersion string   `json:"runc_version"`
	CriuVersion string   `json:"criu_version"`
	CPUFlags    []string `json:"cpu_flags"`
}

const manifestVersion = 1

// maxManifest bounds what is read of a manifest (it lists files, not contents).
const maxManifest = 16 << 20

func writeManifest(p string, m *Manifest) error {
	m.Version = manifestVersion
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if err := os.WriteFile(p, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	return nil
}

// ReadManifest reads dir/manifest.json.
func ReadManifest(dir string) (*Manifest, error) {
	f, err := os.Open(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil, fmt.Errorf("%w: manifest: %w", ErrInvalid, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifest+1))
	if err != nil {
		return nil, fmt.Errorf("%w: manifest: %w", ErrInvalid, err)
	}
	if len(b) > maxManifest {
		return nil, fmt.Errorf("%w: manifest larger than %d bytes", ErrInvalid, maxManifest)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %w", ErrInvalid, err)
	}
	return &m, nil
}

// Validate checks that a checkpoint is complete and can be restored on node: its manifest,
// every file it lists at its recorded size, the CRIU images (criuimg.Validate) and the
// node's architecture, CRIU version and CPU features.
func Validate(c *Checkpoint, node Node) (*Manifest, error) {
	m, err := ReadManifest(c.Dir)
	if err != nil {
		return nil, err
	}
	switch {
	case m.Version != manifestVersion:
		return m, fmt.Errorf("%w: manifest version %d, want %d", ErrInvalid, m.Version, manifestVersion)
	case m.Key != c.Key:
		return m, fmt.Errorf("%w: manifest is for key %q, not %q", ErrInvalid, m.Key, c.Key)
	case len(m.Files) == 0:
		return m, fmt.Errorf("%w: manifest lists no files", ErrInvalid)
	case m.Rootfs != "overlay" && m.Rootfs != "in-place":
		return m, fmt.Errorf("%w: manifest rootfs %q unknown", ErrInvalid, m.Rootfs)
	}
	hasInventory, hasRootfs := false, false
	for _, f := range m.Files {
		if f.Path == "" || path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || strings.HasPrefix(f.Path, "../") || f.Path == ".." {
			return m, fmt.Errorf("%w: manifest lists unsafe path %q", ErrInvalid, f.Path)
		}
		st, err := os.Lstat(filepath.Join(c.Dir, filepath.FromSlash(f.Path)))
		if err != nil {
			return m, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		if !st.Mode().IsRegular() {
			return m, fmt.Errorf("%w: %s is not a regular file", ErrInvalid, f.Path)
		}
		if st.Size() != f.Size {
			return m, fmt.Errorf("%w: %s has %d bytes, manifest says %d", ErrInvalid, f.Path, st.Size(), f.Size)
		}
		hasInventory = hasInventory || f.Path == ImagesDir+"/inventory.img"
		hasRootfs = hasRootfs || f.Path == RootfsTar
	}
	if !hasInventory {
		return m, fmt.Errorf("%w: manifest does not list %s/inventory.img", ErrInvalid, ImagesDir)
	}
	if m.Rootfs == "overlay" && !hasRootfs {
		return m, fmt.Errorf("%w: manifest does not list %s", ErrInvalid, RootfsTar)
	}
	if err := criuimg.Validate(c.Images()); err != nil {
		return m, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return m, Compatible(m.Node, node)
}

// Compatible reports why a checkpoint made on from cannot be restored on to.
func Compatible(from, to Node) error {
	if from.Arch != to.Arch {
		return fmt.Errorf("%w: made on %s, this node is %s", ErrInvalid, from.Arch, to.Arch)
	}
	if from.CriuVersion != "" {
		if to.CriuVersion == "" {
			return fmt.Errorf("%w: made with CRIU %s, this node's CRIU version is unknown", ErrInvalid, from.CriuVersion)
		}
		if compareVersions(to.CriuVersion, from.CriuVersion) < 0 {
			return fmt.Errorf("%w: made with CRIU %s, this node has the older %s", ErrInvalid, from.CriuVersion, to.CriuVersion)
		}
	}
	have := map[string]bool{}
	for _, f := range to.CPUFlags {
		have[f] = true
	}
	var missing []string
	for _, f := range from.CPUFlags {
		if !have[f] {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: this node's CPU lacks %s", ErrInvalid, strings.Join(missing, " "))
	}
	return nil
}

// compareVersions compares dotted numeric versions ("4.1.1" < "4.2").
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(as), len(bs)); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}
