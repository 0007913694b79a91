// Package criuimg checks, reads and fakes CRIU checkpoint image directories
// (as written by `runc checkpoint --image-path DIR`) without running CRIU.
//
// It decodes CRIU's protobuf entries itself (wire.go, with the message schemas
// of schema.go) rather than with go-criu's generated types: their package
// inits, and the protobuf runtime's, would cost every tardis start, runc state
// and exec included. Tests hold the decoder to go-criu's.
package criuimg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrInvalid is wrapped by every validation failure (errors.Is(err, criuimg.ErrInvalid)).
var ErrInvalid = errors.New("invalid checkpoint image")

// invalid names the file (relative to the image dir) and the problem.
func invalid(file, format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, file, fmt.Sprintf(format, a...))
}

// isRawKind reports whether CRIU writes images of a kind without magic or
// framing (RAW_IMAGE_MAGIC in CRIU's magic.h): page contents, ip/iptables/nft
// dumps. (A switch, not a map: no package init.)
func isRawKind(kind string) bool {
	switch kind {
	case "pages", "pages-shmem", "ifaddr", "route", "route6", "rule", "iptables", "ip6tables",
		"nftables", "netns-ct", "netns-exp":
		return true
	}
	return false
}

// kindMagic returns the magic CRIU's image-desc.c gives an image name, so that
// a magic that is known but belongs to another image is caught too. Names not
// listed here (images of a newer CRIU) only need a known magic.
func kindMagic(kind string) (string, bool) {
	m := ""
	switch kind {
	case "inventory":
		m = "INVENTORY"
	case "pstree":
		m = "PSTREE"
	case "core":
		m = "CORE"
	case "ids":
		m = "IDS"
	case "mm":
		m = "MM"
	case "fs":
		m = "FS"
	case "pagemap", "pagemap-shmem", "pagemap-secretmem":
		m = "PAGEMAP"
	case "fdinfo":
		m = "FDINFO"
	case "files":
		m = "FILES"
	case "reg-files":
		m = "REG_FILES"
	case "ext-files":
		m = "EXT_FILES"
	case "ns-files":
		m = "NS_FILES"
	case "eventfd":
		m = "EVENTFD_FILE"
	case "eventpoll":
		m = "EVENTPOLL_FILE"
	case "eventpoll-tfd":
		m = "EVENTPOLL_TFD"
	case "signalfd":
		m = "SIGNALFD"
	case "inotify":
		m = "INOTIFY_FILE"
	case "inotify-wd":
		m = "INOTIFY_WD"
	case "fanotify":
		m = "FANOTIFY_FILE"
	case "fanotify-mark":
		m = "FANOTIFY_MARK"
	case "vmas":
		m = "VMAS"
	case "pipes":
		m = "PIPES"
	case "pipes-data":
		m = "PIPES_DATA"
	case "fifo":
		m = "FIFO"
	case "fifo-data":
		m = "FIFO_DATA"
	case "sigacts":
		m = "SIGACT"
	case "unixsk":
		m = "UNIXSK"
	case "inetsk":
		m = "INETSK"
	case "packetsk":
		m = "PACKETSK"
	case "netlinksk":
		m = "NETLINK_SK"
	case "sk-queues":
		m = "SK_QUEUES"
	case "itimers":
		m = "ITIMERS"
	case "posix-timers":
		m = "POSIX_TIMERS"
	case "creds":
		m = "CREDS"
	case "utsns":
		m = "UTSNS"
	case "ipcns-var":
		m = "IPC_VAR"
	case "ipcns-shm":
		m = "IPCNS_SHM"
	case "ipcns-msg":
		m = "IPCNS_MSG"
	case "ipcns-sem":
		m = "IPCNS_SEM"
	case "remap-fpath":
		m = "REMAP_FPATH"
	case "ghost-file":
		m = "GHOST_FILE"
	case "memfd":
		m = "MEMFD_INODE"
	case "tcp-stream":
		m = "TCP_STREAM"
	case "mountpoints":
		m = "MNTS"
	case "netdev":
		m = "NETDEV"
	case "netns":
		m = "NETNS"
	case "autofs":
		m = "AUTOFS"
	case "binfmt-misc":
		m = "BINFMT_MISC"
	case "tty":
		m = "TTY_FILES"
	case "tty-info":
		m = "TTY_INFO"
	case "tty-data":
		m = "TTY_DATA"
	case "filelocks":
		m = "FILE_LOCKS"
	case "rlimit":
		m = "RLIMIT"
	case "signal-s", "signal-p":
		m = "SIGNAL"
	case "tunfile":
		m = "TUNFILE"
	case "cgroup":
		m = "CGROUP"
	case "timerfd":
		m = "TIMERFD"
	case "cpuinfo":
		m = "CPUINFO"
	case "seccomp":
		m = "SECCOMP"
	case "userns":
		m = "USERNS"
	case "timens":
		m = "TIMENS"
	case "pidns":
		m = "PIDNS"
	case "bpfmap-file":
		m = "BPFMAP_FILE"
	case "bpfmap-data":
		m = "BPFMAP_DATA"
	case "apparmor":
		m = "APPARMOR"
	}
	return m, m != ""
}

// imageKind strips ".img" and a trailing "-<hex id>": "core-12.img" -> "core",
// "ghost-file-1a.img" -> "ghost-file", "pagemap-shmem-3.img" -> "pagemap-shmem".
func imageKind(name string) string {
	base := strings.TrimSuffix(name, ".img")
	if i := strings.LastIndexByte(base, '-'); i > 0 && i < len(base)-1 &&
		strings.Trim(base[i+1:], "0123456789abcdef") == "" {
		return base[:i]
	}
	return base
}

// isRaw reports whether an .img file is one CRIU writes raw (no magic, no entries).
func isRaw(name string) bool {
	return strings.HasSuffix(name, ".tar.gz.img") || isRawKind(imageKind(name))
}

// frames walks the (u32 little-endian size, payload) entries of a CRIU image.
type frames struct {
	file string // name used in errors
	r    io.ReaderAt
	size int64
	off  int64
}

// openFrames reads the magic(s) of an image and returns the magic's name and a
// walker positioned at the first entry; the caller must close it. Images up to
// 16 MiB are read at once; larger ones (ghost files, old-style SysV shm) are
// walked in place.
func openFrames(dir, file string) (string, *frames, error) {
	f, st, err := openRegular(filepath.Join(dir, file))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil, invalid(file, "missing")
	}
	if err != nil {
		return "", nil, fmt.Errorf("%w: %s: %w", ErrInvalid, file, err)
	}
	fr := &frames{file: file, r: f, size: st.Size()}
	if fr.size <= 16<<20 {
		b, err := io.ReadAll(io.LimitReader(f, fr.size))
		f.Close()
		if err != nil {
			return "", nil, fmt.Errorf("%w: %s: %w", ErrInvalid, file, err)
		}
		fr.r, fr.size = bytes.NewReader(b), int64(len(b))
	}
	return readMagic(fr)
}

// maxEntry bounds one entry's size: what an entry announces is allocated before it is
// read, and a planted sparse image could announce up to 4 GiB. CRIU's largest entries
// are an mm entry's mappings (about 64 bytes each: a million mappings fit) and a core's
// registers; raw payloads (pipe data, ghost files) follow their entries and are skipped
// in place.
const maxEntry = 128 << 20

// errNotRegular is why a FIFO, device, socket or directory is not an image.
var errNotRegular = errors.New("not a regular file")

// openRegular opens a regular file for reading. It opens without blocking: a
// plain open of a FIFO waits for a writer, forever in an image dir.
func openRegular(path string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = errNotRegular
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, st, nil
}

// close releases the descriptor of a large image walked in place.
func (fr *frames) close() {
	if c, ok := fr.r.(io.Closer); ok {
		c.Close()
	}
}

func bytesFrames(file string, b []byte) (string, *frames, error) {
	return readMagic(&frames{file: file, r: bytes.NewReader(b), size: int64(len(b))})
}

func readMagic(fr *frames) (string, *frames, error) {
	m, err := fr.u32("magic")
	if err == nil && (m == imgCommon || m == imgService) {
		m, err = fr.u32("magic")
	}
	if err != nil {
		fr.close()
		return "", nil, err
	}
	name, ok := magicName(m)
	if !ok {
		fr.close()
		return "", nil, invalid(fr.file, "unknown magic 0x%08x", m)
	}
	return name, fr, nil
}

func (fr *frames) u32(what string) (uint32, error) {
	var b [4]byte
	if fr.size-fr.off < 4 {
		return 0, invalid(fr.file, "truncated %s at offset %d", what, fr.off)
	}
	if err := fr.read(b[:]); err != nil {
		return 0, err
	}
	fr.off += 4
	return binary.LittleEndian.Uint32(b[:]), nil
}

// read fills b from the current offset; empty entries are real (seccomp.img
// of a process without filters is one), and ReaderAt may say EOF on a full read.
func (fr *frames) read(b []byte) error {
	if n, err := fr.r.ReadAt(b, fr.off); n < len(b) {
		return fmt.Errorf("%w: %s: %w", ErrInvalid, fr.file, err)
	}
	return nil
}

// next returns the next entry's payload, io.EOF exactly at the end of the
// file, or an error for an entry that does not fit or is not protobuf.
func (fr *frames) next() ([]byte, error) {
	if fr.off == fr.size {
		return nil, io.EOF
	}
	start := fr.off
	n, err := fr.u32("entry")
	if err != nil {
		return nil, invalid(fr.file, "truncated entry at offset %d", start)
	}
	if int64(n) > fr.size-fr.off {
		return nil, invalid(fr.file, "truncated entry at offset %d (%d bytes announced, %d left)",
			start, n, fr.size-fr.off)
	}
	if n > maxEntry {
		return nil, invalid(fr.file, "entry at offset %d: %d bytes announced, more than CRIU writes in one entry (%d)",
			start, n, maxEntry)
	}
	b := make([]byte, n)
	if err := fr.read(b); err != nil {
		return nil, err
	}
	fr.off += int64(n)
	if err := wellFormed(b); err != nil {
		return nil, fmt.Errorf("%w: %s: entry at offset %d is not protobuf: %w", ErrInvalid, fr.file, start, err)
	}
	return b, nil
}

// skip steps over raw bytes that follow an entry (pipe data, socket queues...).
func (fr *frames) skip(n uint64, what string) error {
	if n > uint64(fr.size-fr.off) {
		return invalid(fr.file, "truncated %s at offset %d (%d bytes announced, %d left)",
			what, fr.off, n, fr.size-fr.off)
	}
	fr.off += int64(n)
	return nil
}

// wellFormed checks the wire format of an entry whose type is not known.
func wellFormed(b []byte) error {
	return check(&msgUnknown, b, true)
}

// decode checks entry i of file as a message m (see check).
func decode(file string, i int, b []byte, m *message) error {
	if err := check(m, b, true); err != nil {
		return fmt.Errorf("%w: %s: entry %d: %w", ErrInvalid, file, i, err)
	}
	return nil
}

func roundUp(n, to uint64) uint64 { return (n + to - 1) / to * to }
