package criuimg

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	bpfmap_data "github.com/checkpoint-restore/go-criu/v7/crit/images/bpfmap-data"
	criu_core "github.com/checkpoint-restore/go-criu/v7/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/fs"
	ghost_file "github.com/checkpoint-restore/go-criu/v7/crit/images/ghost-file"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/inventory"
	ipc_msg "github.com/checkpoint-restore/go-criu/v7/crit/images/ipc-msg"
	ipc_sem "github.com/checkpoint-restore/go-criu/v7/crit/images/ipc-sem"
	ipc_shm "github.com/checkpoint-restore/go-criu/v7/crit/images/ipc-shm"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/pagemap"
	pipe_data "github.com/checkpoint-restore/go-criu/v7/crit/images/pipe-data"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/pstree"
	sk_packet "github.com/checkpoint-restore/go-criu/v7/crit/images/sk-packet"
	tcp_stream "github.com/checkpoint-restore/go-criu/v7/crit/images/tcp-stream"
	"google.golang.org/protobuf/proto"
)

// Values of task_core_entry.task_state and pagemap_entry.flags (CRIU's
// compel task-state.h and pagemap.h).
const (
	taskAlive  = 1
	taskDead   = 2 // a zombie: CRIU dumps only its core image
	taskZombie = 6 // compel's name for the same; tolerated in case an image carries it

	pePresent = 1 << 2 // the pages are in this image's pages-<id>.img
	peParent  = 1 << 0 // the pages are in the parent (pre-dump) image
)

// image is the protobuf entries of one image; raw payload that follows some
// entries (pipe data, socket queues...) is skipped, not kept.
type image struct {
	magic   string
	entries [][]byte
}

// readImage reads and frames one image: every entry must fit, and the last
// entry (with its raw payload) must end exactly at EOF.
func readImage(dir, file string) (*image, error) {
	m, fr, err := openFrames(dir, file)
	if err != nil {
		return nil, err
	}
	defer fr.close()
	if want, ok := kindMagic[imageKind(file)]; ok && want != m {
		return nil, invalid(file, "magic %s, want %s", m, want)
	}
	img := &image{magic: m}
	for i := 0; ; i++ {
		b, err := fr.next()
		if err == io.EOF {
			return img, nil
		}
		if err != nil {
			return nil, err
		}
		img.entries = append(img.entries, b)
		raw, err := rawAfter(fr, m, i, b)
		if err != nil {
			return nil, err
		}
		if raw < 0 { // the rest of the file is raw content
			return img, nil
		}
	}
}

// rawAfter steps over the raw payload CRIU writes after entry i of the images
// that have one, and returns its size, or -1 if the rest of the file is raw.
func rawAfter(fr *frames, magic string, i int, b []byte) (int64, error) {
	var n uint64
	switch magic {
	case "PIPES_DATA", "FIFO_DATA":
		e := &pipe_data.PipeDataEntry{}
		if err := unmarshal(fr.file, i, b, e); err != nil {
			return 0, err
		}
		n = uint64(e.GetBytes())
	case "SK_QUEUES":
		e := &sk_packet.SkPacketEntry{}
		if err := unmarshal(fr.file, i, b, e); err != nil {
			return 0, err
		}
		n = uint64(e.GetLength())
	case "TCP_STREAM":
		e := &tcp_stream.TcpStreamEntry{}
		if err := unmarshal(fr.file, i, b, e); err != nil {
			return 0, err
		}
		n = uint64(e.GetInqLen()) + uint64(e.GetOutqLen())
	case "BPFMAP_DATA":
		e := &bpfmap_data.BpfmapDataEntry{}
		if err := unmarshal(fr.file, i, b, e); err != nil {
			return 0, err
		}
		n = uint64(e.GetKeysBytes()) + uint64(e.GetValuesBytes())
	case "IPCNS_SEM":
		e := &ipc_sem.IpcSemEntry{}
		if err := unmarshal(fr.file, i, b, e); err != nil {
			return 0, err
		}
		n = roundUp(2*uint64(e.GetNsems()), 8)
	case "IPCNS_SHM":
		e := &ipc_shm.IpcShmEntry{}
		if err := unmarshal(fr.file, i, b, e); err != nil {
			return 0, err
		}
		if !e.GetInPagemaps() { // older CRIU wrote the segment inline
			n = roundUp(e.GetSize(), 4)
		}
	case "IPCNS_MSG":
		// A queue entry is followed by qnum (ipc_msg entry, message text) pairs.
		e := &ipc_msg.IpcMsgEntry{}
		if err := unmarshal(fr.file, i, b, e); err != nil {
			return 0, err
		}
		for range e.GetQnum() {
			mb, err := fr.next()
			if err == io.EOF {
				return 0, invalid(fr.file, "queue of entry %d: missing message at offset %d", i, fr.off)
			}
			if err != nil {
				return 0, err
			}
			msg := &ipc_msg.IpcMsg{}
			if err := unmarshal(fr.file, i, mb, msg); err != nil {
				return 0, err
			}
			if err := fr.skip(roundUp(uint64(msg.GetMsize()), 8), "message text"); err != nil {
				return 0, err
			}
		}
		return 0, nil
	case "GHOST_FILE":
		// Entry 0 describes the file; with chunks, (ghost_chunk_entry, data)
		// pairs follow, otherwise the file's contents run to EOF.
		if i == 0 {
			e := &ghost_file.GhostFileEntry{}
			if err := unmarshal(fr.file, i, b, e); err != nil {
				return 0, err
			}
			if !e.GetChunks() {
				return -1, nil
			}
			return 0, nil
		}
		e := &ghost_file.GhostChunkEntry{}
		if err := unmarshal(fr.file, i, b, e); err != nil {
			return 0, err
		}
		n = e.GetLen()
	default:
		return 0, nil
	}
	return int64(n), fr.skip(n, fmt.Sprintf("payload of entry %d", i))
}

// one decodes an image that must hold exactly one entry (core, mm, ids, fs, inventory).
func one(images map[string]*image, file, why string, m proto.Message) error {
	img := images[file]
	if img == nil {
		return invalid(file, "missing (%s)", why)
	}
	if len(img.entries) != 1 {
		return invalid(file, "%d entries, want exactly 1", len(img.entries))
	}
	return unmarshal(file, 0, img.entries[0], m)
}

// Validate checks a CRIU image directory (as written by `runc checkpoint
// --image-path DIR`) without running CRIU, and cheaply: pages-*.img files are
// only stat'ed. It returns nil or an error wrapping ErrInvalid that names the
// file and the problem, e.g. "core-12.img: truncated entry at offset 80".
func Validate(dir string) error {
	des, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	images := map[string]*image{}
	// inventory.img first: a dir without one is not an image at all.
	inv := &inventory.InventoryEntry{}
	if images["inventory.img"], err = readImage(dir, "inventory.img"); err != nil {
		return err
	}
	if err := one(images, "inventory.img", "", inv); err != nil {
		return err
	}
	if v := inv.GetImgVersion(); v != 1 && v != 2 {
		return invalid("inventory.img", "unsupported images version %d", v)
	}
	for _, de := range des {
		name := de.Name()
		if !strings.HasSuffix(name, ".img") || isRaw(name) || images[name] != nil || de.IsDir() {
			continue
		}
		if images[name], err = readImage(dir, name); err != nil {
			return err
		}
	}
	if err := checkTasks(images); err != nil {
		return err
	}
	if err := checkPages(dir, images); err != nil {
		return err
	}
	return checkDescriptors(dir)
}

// checkTasks checks pstree.img and that every task has its per-task images.
func checkTasks(images map[string]*image) error {
	const file = "pstree.img"
	pst := images[file]
	if pst == nil {
		return invalid(file, "missing")
	}
	tasks := map[uint32]*pstree.PstreeEntry{}
	threads := map[uint32]bool{}
	var order []uint32
	var roots []uint32
	for i, b := range pst.entries {
		e := &pstree.PstreeEntry{}
		if err := unmarshal(file, i, b, e); err != nil {
			return err
		}
		pid := e.GetPid()
		if pid == 0 || tasks[pid] != nil {
			return invalid(file, "entry %d: bad or duplicate pid %d", i, pid)
		}
		if len(e.GetThreads()) == 0 {
			return invalid(file, "task %d has no threads", pid)
		}
		for _, tid := range e.GetThreads() {
			if tid == 0 || threads[tid] {
				return invalid(file, "task %d: bad or duplicate thread id %d", pid, tid)
			}
			threads[tid] = true
		}
		tasks[pid] = e
		order = append(order, pid)
		if e.GetPpid() == 0 {
			roots = append(roots, pid)
		}
	}
	if len(roots) != 1 {
		return invalid(file, "%d root tasks (ppid 0), want exactly 1", len(roots))
	}
	// Every task must hang off the root: a missing parent or a cycle would
	// make restore (and crit's ExplorePs) fail.
	for _, pid := range order {
		seen := 0
		for p := pid; p != roots[0]; p = tasks[p].GetPpid() {
			if tasks[p] == nil {
				return invalid(file, "task %d: ancestor %d is not in the tree", pid, p)
			}
			if seen++; seen > len(tasks) {
				return invalid(file, "task %d: parent chain has a cycle", pid)
			}
		}
	}
	for _, pid := range order {
		core := &criu_core.CoreEntry{}
		coreFile := fmt.Sprintf("core-%d.img", pid)
		if err := one(images, coreFile, fmt.Sprintf("task %d in pstree.img", pid), core); err != nil {
			return err
		}
		if core.GetTc() == nil {
			return invalid(coreFile, "no task_core entry for task %d", pid)
		}
		for _, tid := range tasks[pid].GetThreads() {
			if tid == pid {
				continue
			}
			f := fmt.Sprintf("core-%d.img", tid)
			if err := one(images, f, fmt.Sprintf("thread %d of task %d in pstree.img", tid, pid), &criu_core.CoreEntry{}); err != nil {
				return err
			}
		}
		if st := core.GetTc().GetTaskState(); st == taskDead || st == taskZombie {
			continue
		}
		why := fmt.Sprintf("live task %d in pstree.img", pid)
		if err := one(images, fmt.Sprintf("mm-%d.img", pid), why, &mm.MmEntry{}); err != nil {
			return err
		}
		if f := fmt.Sprintf("pagemap-%d.img", pid); images[f] == nil {
			return invalid(f, "missing (%s)", why)
		}
		if err := one(images, fmt.Sprintf("ids-%d.img", pid), why, &criu_core.TaskKobjIdsEntry{}); err != nil {
			return err
		}
		if err := one(images, fmt.Sprintf("fs-%d.img", pid), why, &fs.FsEntry{}); err != nil {
			return err
		}
	}
	// Per-task images of tasks not in the tree mean pstree.img lost entries.
	for _, name := range sortedNames(images) {
		kind := imageKind(name)
		switch kind {
		case "core", "mm", "pagemap", "ids", "fs":
		default:
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, kind+"-"), ".img"), 10, 32)
		if err != nil {
			continue
		}
		if kind == "core" && !threads[uint32(id)] || kind != "core" && tasks[uint32(id)] == nil {
			return invalid(name, "%d is not in pstree.img", id)
		}
	}
	return nil
}

// checkPages checks that every pagemap's present pages match the size of its
// pages file. Only stat: the pages themselves are never read.
func checkPages(dir string, images map[string]*image) error {
	owner := map[uint32]string{}
	page := uint64(os.Getpagesize())
	for _, name := range sortedNames(images) {
		img := images[name]
		if img.magic != "PAGEMAP" {
			continue
		}
		if len(img.entries) == 0 {
			return invalid(name, "no pagemap head")
		}
		head := &pagemap.PagemapHead{}
		if err := unmarshal(name, 0, img.entries[0], head); err != nil {
			return err
		}
		id := head.GetPagesId()
		if prev, ok := owner[id]; ok {
			return invalid(name, "pages id %d already used by %s", id, prev)
		}
		owner[id] = name
		var present uint64
		for i, b := range img.entries[1:] {
			e := &pagemap.PagemapEntry{}
			if err := unmarshal(name, i+1, b, e); err != nil {
				return err
			}
			flags := e.GetFlags()
			if e.Flags == nil { // images older than the flags field
				flags = pePresent
				if e.GetInParent() {
					flags = peParent
				}
			}
			if flags&pePresent != 0 {
				present += uint64(e.GetNrPages())
			}
		}
		if present > 1<<40 { // keeps present*page from overflowing
			return invalid(name, "%d present pages is not plausible", present)
		}
		pages := fmt.Sprintf("pages-%d.img", id)
		st, err := os.Stat(filepath.Join(dir, pages))
		switch {
		case errors.Is(err, os.ErrNotExist) && present == 0:
			continue
		case errors.Is(err, os.ErrNotExist):
			return invalid(pages, "missing (%s has %d present pages)", name, present)
		case err != nil:
			return fmt.Errorf("%w: %s: %w", ErrInvalid, pages, err)
		case !st.Mode().IsRegular():
			return invalid(pages, "not a regular file")
		}
		if size := uint64(st.Size()); size != present*page {
			return invalid(pages, "size %d bytes, but %s has %d present pages (%d bytes)",
				size, name, present, present*page)
		}
	}
	return nil
}

func sortedNames(images map[string]*image) []string {
	names := make([]string, 0, len(images))
	for name := range images {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// checkDescriptors checks runc's descriptors.json: runc restore needs it to
// map the image's stdio, as a JSON array of exactly three strings.
func checkDescriptors(dir string) error {
	const file = "descriptors.json"
	b, err := os.ReadFile(filepath.Join(dir, file))
	if errors.Is(err, os.ErrNotExist) {
		return invalid(file, "missing (runc restore needs it)")
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalid, file, err)
	}
	var fds []any
	if err := json.Unmarshal(b, &fds); err != nil {
		return invalid(file, "not a JSON array: %v", err)
	}
	if len(fds) != 3 {
		return invalid(file, "%d entries, want 3 (stdin, stdout, stderr)", len(fds))
	}
	for i, v := range fds {
		if _, ok := v.(string); !ok {
			return invalid(file, "entry %d is not a string", i)
		}
	}
	return nil
}
