package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tardis-runtime/tardis/internal/criuimg"
	"github.com/tardis-runtime/tardis/internal/gpu"
	"github.com/tardis-runtime/tardis/internal/optin"
	"github.com/tardis-runtime/tardis/internal/rootfs"
)

// ErrInvalid is wrapped by every reason a checkpoint cannot be restored here.
var ErrInvalid = errors.New("checkpoint not restorable")

// Manifest describes a checkpoint; README.md documents it.
type Manifest struct {
	Version int    `json:"version"`
	Tenant  string `json:"tenant"`
	Key     string `json:"key"`
	// Identity is what the checkpointed container ran; only a container that would run
	// the same is restored from it.
	Identity    optin.Identity `json:"identity"`
	ContainerID string         `json:"container_id"`
	Created     time.Time      `json:"created"`
	Node        Node           `json:"node"`
	// Rootfs says how the container's files were saved: "overlay" (the upper directory's
	// changes are in rootfs.tar) or "in-place" (a plain directory rootfs, used as it is).
	Rootfs      string        `json:"rootfs"`
	RootfsStats *rootfs.Stats `json:"rootfs_stats,omitempty"`
	NetworkFS   string        `json:"networkfs,omitempty"`
	// GPU is the container's CUDA state, suspended before the dump: the node's driver and
	// GPUs, and what each CUDA process held on the GPU (nil when it held none). A restore
	// needs GPU support on and a node that can take it (gpu.Node.Fits).
	GPU       *gpu.Checkpoint    `json:"gpu,omitempty"`
	Files     []File             `json:"files"`
	DumpStats *criuimg.DumpStats `json:"dump_stats,omitempty"`
	Timings   map[string]float64 `json:"timings_ms,omitempty"`
	// Signature is the HMAC-SHA256 (hex) of the manifest with this field empty, when the
	// store that wrote it signs (see sign.go).
	Signature string `json:"signature,omitempty"`
}

// File is one file of a checkpoint, relative to its directory.
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256,omitempty"` // in signed checkpoints
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

// manifestVersion 2: tenants, identities and signatures. gpuManifestVersion 3: the same
// with CUDA state (GPU), written only for a checkpoint that has some, so that a tardis
// that knows nothing of the GPU refuses it (by its version) rather than restore a
// container whose CUDA processes it would leave suspended.
const (
	manifestVersion    = 2
	gpuManifestVersion = 3
)

// versionOf is the version a manifest is written with.
func versionOf(m *Manifest) int {
	if m.GPU != nil {
		return gpuManifestVersion
	}
	return manifestVersion
}

// maxManifest bounds what is read of a manifest (it lists files, not contents).
const maxManifest = 16 << 20

func writeManifest(p string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if err := os.WriteFile(p, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	return nil
}

// ReadManifest reads dir/manifest.json (never through a symlink), for showing it; Validate
// is what decides whether a checkpoint may be restored.
func ReadManifest(dir string) (*Manifest, error) {
	f, err := os.OpenFile(filepath.Join(dir, ManifestName), os.O_RDONLY|syscallNoFollow, 0)
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

// Validate checks that a checkpoint is whole, is what tardis wrote, and can be restored on
// node: every directory and file as tardis makes them (no symlink, owner, modes), exactly
// the files its manifest lists at their sizes, the manifest's tenant and key those of the
// directory it is in, its signature and digests when the store signs, the CRIU images
// (criuimg.Validate), and the node's architecture, CRIU version and CPU features. Whether
// the checkpoint is the same container as the one being created is the caller's to ask
// (optin.Identity.Diff).
func (s Store) Validate(c *Checkpoint, node Node) (*Manifest, error) {
	if err := s.checkDir(c.Dir); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if _, err := s.checkFile(filepath.Join(c.Dir, ManifestName)); err != nil {
		return nil, fmt.Errorf("%w: manifest: %w", ErrInvalid, err)
	}
	m, err := ReadManifest(c.Dir)
	if err != nil {
		return nil, err
	}
	switch {
	case m.Version != versionOf(m):
		return m, fmt.Errorf("%w: manifest version %d, want %d", ErrInvalid, m.Version, versionOf(m))
	case m.Tenant != c.Tenant:
		return m, fmt.Errorf("%w: manifest is of tenant %q, not %q", ErrInvalid, m.Tenant, c.Tenant)
	case m.Key != c.Key:
		return m, fmt.Errorf("%w: manifest is for key %q, not %q", ErrInvalid, m.Key, c.Key)
	case len(m.Files) == 0:
		return m, fmt.Errorf("%w: manifest lists no files", ErrInvalid)
	case m.Rootfs != "overlay" && m.Rootfs != "in-place":
		return m, fmt.Errorf("%w: manifest rootfs %q unknown", ErrInvalid, m.Rootfs)
	}
	if err := s.checkFiles(c.Dir, m); err != nil {
		return m, err
	}
	if err := s.verify(c.Dir, m); err != nil {
		return m, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := criuimg.Validate(c.Images()); err != nil {
		return m, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return m, Compatible(m.Node, node)
}

// checkFiles checks that the checkpoint directory holds exactly the files the manifest
// lists (and the manifest, and the REASON of one set aside), each at its size and as
// tardis makes them, and nothing else but directories as tardis makes them.
func (s Store) checkFiles(dir string, m *Manifest) error {
	want := map[string]int64{}
	hasInventory, hasRootfs := false, false
	for _, f := range m.Files {
		if f.Path == "" || path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || strings.HasPrefix(f.Path, "../") || f.Path == ".." {
			return fmt.Errorf("%w: manifest lists unsafe path %q", ErrInvalid, f.Path)
		}
		if _, dup := want[f.Path]; dup {
			return fmt.Errorf("%w: manifest lists %q twice", ErrInvalid, f.Path)
		}
		want[f.Path] = f.Size
		hasInventory = hasInventory || f.Path == ImagesDir+"/inventory.img"
		hasRootfs = hasRootfs || f.Path == RootfsTar
	}
	if !hasInventory {
		return fmt.Errorf("%w: manifest does not list %s/inventory.img", ErrInvalid, ImagesDir)
	}
	if m.Rootfs == "overlay" && !hasRootfs {
		return fmt.Errorf("%w: manifest does not list %s", ErrInvalid, RootfsTar)
	}
	seen := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() && d.Type()&fs.ModeSymlink == 0 {
			return s.checkDir(p)
		}
		st, err := s.checkFile(p)
		if err != nil {
			return err
		}
		if rel == ManifestName || rel == ReasonFile {
			return nil
		}
		size, ok := want[rel]
		switch {
		case !ok:
			return fmt.Errorf("%q is not in the manifest", rel)
		case st.Size() != size:
			return fmt.Errorf("%q has %d bytes, manifest says %d", rel, st.Size(), size)
		}
		seen++
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if seen != len(want) {
		for p := range want {
			if _, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(p))); err != nil {
				return fmt.Errorf("%w: %q: %w", ErrInvalid, p, err)
			}
		}
	}
	return nil
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
