// Package criuimg checks, reads and fakes CRIU checkpoint image directories
// (as written by `runc checkpoint --image-path DIR`) without running CRIU.
//
// It uses go-criu's generated protobuf types and magic table, but does its own
// framing: crit's readers use plain reads, so truncated files can pass them and
// short files can make them panic.
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

	"github.com/checkpoint-restore/go-criu/v7/magic"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// ErrInvalid is wrapped by every validation failure (errors.Is(err, criuimg.ErrInvalid)).
var ErrInvalid = errors.New("invalid checkpoint image")

// invalid names the file (relative to the image dir) and the problem.
func invalid(file, format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, file, fmt.Sprintf(format, a...))
}

var magics = magic.LoadMagic()

const (
	imgCommon  = 0x54564319 // prefixes every image but inventory (images v1.1)
	imgService = 0x55105940 // prefixes stats-* and irmap-cache
)

// rawKinds are the images CRIU writes without magic or framing (RAW_IMAGE_MAGIC
// in CRIU's magic.h): page contents, ip/iptables/nft dumps, tarballs.
var rawKinds = map[string]bool{
	"pages": true, "pages-shmem": true, "ifaddr": true, "route": true, "route6": true,
	"rule": true, "iptables": true, "ip6tables": true, "nftables": true,
	"netns-ct": true, "netns-exp": true,
}

// kindMagic is the magic CRIU's image-desc.c gives each image name, so that a
// magic that is known but belongs to another image is caught too. Names not
// listed here (images of a newer CRIU) only need a known magic.
var kindMagic = map[string]string{
	"inventory": "INVENTORY", "pstree": "PSTREE", "core": "CORE", "ids": "IDS", "mm": "MM",
	"fs": "FS", "pagemap": "PAGEMAP", "pagemap-shmem": "PAGEMAP", "pagemap-secretmem": "PAGEMAP",
	"fdinfo": "FDINFO", "files": "FILES", "reg-files": "REG_FILES", "ext-files": "EXT_FILES",
	"ns-files": "NS_FILES", "eventfd": "EVENTFD_FILE", "eventpoll": "EVENTPOLL_FILE",
	"eventpoll-tfd": "EVENTPOLL_TFD", "signalfd": "SIGNALFD", "inotify": "INOTIFY_FILE",
	"inotify-wd": "INOTIFY_WD", "fanotify": "FANOTIFY_FILE", "fanotify-mark": "FANOTIFY_MARK",
	"vmas": "VMAS", "pipes": "PIPES", "pipes-data": "PIPES_DATA", "fifo": "FIFO",
	"fifo-data": "FIFO_DATA", "sigacts": "SIGACT", "unixsk": "UNIXSK", "inetsk": "INETSK",
	"packetsk": "PACKETSK", "netlinksk": "NETLINK_SK", "sk-queues": "SK_QUEUES",
	"itimers": "ITIMERS", "posix-timers": "POSIX_TIMERS", "creds": "CREDS", "utsns": "UTSNS",
	"ipcns-var": "IPC_VAR", "ipcns-shm": "IPCNS_SHM", "ipcns-msg": "IPCNS_MSG",
	"ipcns-sem": "IPCNS_SEM", "remap-fpath": "REMAP_FPATH", "ghost-file": "GHOST_FILE",
	"memfd": "MEMFD_INODE", "tcp-stream": "TCP_STREAM", "mountpoints": "MNTS",
	"netdev": "NETDEV", "netns": "NETNS", "autofs": "AUTOFS", "binfmt-misc": "BINFMT_MISC",
	"tty": "TTY_FILES", "tty-info": "TTY_INFO", "tty-data": "TTY_DATA",
	"filelocks": "FILE_LOCKS", "rlimit": "RLIMIT", "signal-s": "SIGNAL", "signal-p": "SIGNAL",
	"tunfile": "TUNFILE", "cgroup": "CGROUP", "timerfd": "TIMERFD", "cpuinfo": "CPUINFO",
	"seccomp": "SECCOMP", "userns": "USERNS", "timens": "TIMENS", "pidns": "PIDNS",
	"bpfmap-file": "BPFMAP_FILE", "bpfmap-data": "BPFMAP_DATA", "apparmor": "APPARMOR",
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
	return strings.HasSuffix(name, ".tar.gz.img") || rawKinds[imageKind(name)]
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
	f, err := os.Open(filepath.Join(dir, file))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil, invalid(file, "missing")
	}
	if err != nil {
		return "", nil, fmt.Errorf("%w: %s: %w", ErrInvalid, file, err)
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	fr := &frames{file: file, r: f}
	if err == nil {
		fr.size = st.Size()
		if fr.size <= 16<<20 {
			var b []byte
			b, err = io.ReadAll(io.LimitReader(f, fr.size))
			f.Close()
			fr.r, fr.size = bytes.NewReader(b), int64(len(b))
		}
	}
	if err != nil {
		fr.close()
		return "", nil, fmt.Errorf("%w: %s: %w", ErrInvalid, file, err)
	}
	return readMagic(fr)
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
	name, ok := magics.ByValue[uint64(m)]
	if !ok || m == imgCommon || m == imgService {
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
	b := make([]byte, n)
	if err := fr.read(b); err != nil {
		return nil, err
	}
	fr.off += int64(n)
	if err := wellFormed(b); err != nil {
		return nil, invalid(fr.file, "entry at offset %d is not protobuf: %v", start, err)
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

// wellFormed checks the protobuf wire format without knowing the message type.
func wellFormed(b []byte) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

// unmarshal decodes one entry, naming the file and entry on failure.
func unmarshal(file string, i int, b []byte, m proto.Message) error {
	if err := proto.Unmarshal(b, m); err != nil {
		return invalid(file, "entry %d: %v", i, err)
	}
	return nil
}

func roundUp(n, to uint64) uint64 { return (n + to - 1) / to * to }
