package criuimg

import (
	"errors"
	"io"
	"path/filepath"
)

// DumpStats is CRIU's dump statistics (from stats-dump in the image dir); the
// field names follow Podman's --print-stats JSON (microseconds / counts).
type DumpStats struct {
	FreezingTime uint32 `json:"freezing_time"`
	FrozenTime   uint32 `json:"frozen_time"`
	MemdumpTime  uint32 `json:"memdump_time"`
	MemwriteTime uint32 `json:"memwrite_time"`
	PagesScanned uint64 `json:"pages_scanned"`
	PagesWritten uint64 `json:"pages_written"`
}

// RestoreStats is CRIU's restore statistics (from stats-restore in the work dir).
type RestoreStats struct {
	ForkingTime   uint32 `json:"forking_time"`
	RestoreTime   uint32 `json:"restore_time"`
	PagesRestored uint64 `json:"pages_restored"`
}

// ReadDumpStats reads DIR/stats-dump. A missing file gives an error wrapping
// fs.ErrNotExist; a damaged one an error wrapping ErrInvalid.
func ReadDumpStats(dir string) (*DumpStats, error) {
	e, err := readStats(dir, "stats-dump")
	if err != nil {
		return nil, err
	}
	d, ok := dumpStats(e)
	if !ok {
		return nil, invalid("stats-dump", "no dump statistics")
	}
	return d, nil
}

// ReadRestoreStats reads DIR/stats-restore, with the errors of ReadDumpStats.
func ReadRestoreStats(dir string) (*RestoreStats, error) {
	e, err := readStats(dir, "stats-restore")
	if err != nil {
		return nil, err
	}
	r, ok := restoreStats(e)
	if !ok {
		return nil, invalid("stats-restore", "no restore statistics")
	}
	return r, nil
}

// readStats returns the one stats_entry of a stats file (crit.GetDumpStats,
// which this replaces, panics on a short file).
func readStats(dir, file string) ([]byte, error) {
	f, _, err := openRegular(filepath.Join(dir, file))
	if errors.Is(err, errNotRegular) {
		return nil, invalid(file, "%v", err)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, err
	}
	m, fr, err := bytesFrames(file, b)
	if err != nil {
		return nil, err
	}
	if m != "STATS" {
		return nil, invalid(file, "magic %s, want STATS", m)
	}
	p, err := fr.next()
	if err == io.EOF {
		return nil, invalid(file, "no entry")
	}
	if err != nil {
		return nil, err
	}
	switch _, err := fr.next(); {
	case err == nil:
		return nil, invalid(file, "more than one entry")
	case err != io.EOF:
		return nil, err
	}
	if err := decode(file, 0, p, &msgStatsEntry); err != nil {
		return nil, err
	}
	return p, nil
}
