package gpu

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// procFS reads what tardis needs of /proc, rooted wherever the caller says.
type procFS string

func (p procFS) path(pid int, name string) string {
	return filepath.Join(string(p), strconv.Itoa(pid), name)
}

// gone reports an error that means the process has exited (or never was).
func gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH)
}

// holds reports whether the process has a file open, or a mapping, whose path match
// accepts. A process that is gone holds nothing.
func (p procFS) holds(pid int, match func(path string) bool) (bool, error) {
	fdDir := p.path(pid, "fd")
	entries, err := os.ReadDir(fdDir)
	if gone(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", fdDir, err)
	}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err == nil && match(target) {
			return true, nil
		}
		// An fd closed since the directory was read: go on.
	}
	maps := p.path(pid, "maps")
	f, err := os.Open(maps)
	if gone(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open %s: %w", maps, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		if path, ok := mapsPath(sc.Text()); ok && match(path) {
			return true, nil
		}
	}
	if err := sc.Err(); err != nil && !gone(err) {
		return false, fmt.Errorf("read %s: %w", maps, err)
	}
	return false, nil
}

// mapsPath is the path of one /proc/PID/maps line ("addr perms offset dev inode path"),
// false for anonymous mappings.
func mapsPath(line string) (string, bool) {
	fields := 0
	for i := 0; i < len(line); {
		for i < len(line) && line[i] == ' ' {
			i++
		}
		if i == len(line) {
			return "", false
		}
		if fields == 5 {
			return line[i:], true
		}
		for i < len(line) && line[i] != ' ' {
			i++
		}
		fields++
	}
	return "", false
}

// comm is the process's command name, "?" when it cannot be read.
func (p procFS) comm(pid int) string {
	b, err := os.ReadFile(p.path(pid, "comm"))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// nsPID is the process's pid in its innermost pid namespace (the last NSpid of its
// status); 0 when it cannot be read.
func (p procFS) nsPID(pid int) int {
	b, err := os.ReadFile(p.path(pid, "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return 0
			}
			n, _ := strconv.Atoi(f[len(f)-1])
			return n
		}
	}
	return 0
}
