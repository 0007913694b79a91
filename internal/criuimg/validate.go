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
	if want, ok := kindMagic(imageKind(file)); ok && want != m {
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
	case "PIPES_DATA", "FIFO_DATA", "SK_QUEUES", "TCP_STREAM", "BPFMAP_DATA", "IPCNS_SEM", "IPCNS_SHM":
		if err := decode(fr.file, i, b, payloadEntry(magic)); err != nil {
			return 0, err
		}
		n = payloadSize(magic, b)
	case "IPCNS_MSG":
		// A queue entry is followed by qnum (ipc_msg entry, message text) pairs.
		if err := decode(fr.file, i, b, &msgIpcMsgEntry); err != nil {
			return 0, err
		}
		for range msgQueueLen(b) {
			mb, err := fr.next()
			if err == io.EOF {
				return 0, invalid(fr.file, "queue of entry %d: missing message at offset %d", i, fr.off)
			}
			if err != nil {
				return 0, err
			}
			if err := decode(fr.file, i, mb, &msgIpcMsg); err != nil {
				return 0, err
			}
			if err := fr.skip(msgTextLen(mb), "message text"); err != nil {
				return 0, err
			}
		}
		return 0, nil
	case "GHOST_FILE":
		// Entry 0 describes the file; with chunks, (ghost_chunk_entry, data)
		// pairs follow, otherwise the file's contents run to EOF.
		if i == 0 {
			if err := decode(fr.file, i, b, &msgGhostFileEntry); err != nil {
				return 0, err
			}
			if !ghostChunked(b) {
				return -1, nil
			}
			return 0, nil
		}
		if err := decode(fr.file, i, b, &msgGhostChunkEntry); err != nil {
			return 0, err
		}
		n = ghostChunkLen(b)
	default:
		return 0, nil
	}
	return int64(n), fr.skip(n, fmt.Sprintf("payload of entry %d", i))
}

// one checks that an image holds exactly one entry (core, mm, ids, fs,
// inventory), a valid m, and returns it.
func one(images map[string]*image, file, why string, m *message) ([]byte, error) {
	img := images[file]
	if img == nil {
		return nil, invalid(file, "missing (%s)", why)
	}
	if len(img.entries) != 1 {
		return nil, invalid(file, "%d entries, want exactly 1", len(img.entries))
	}
	return img.entries[0], decode(file, 0, img.entries[0], m)
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
	if images["inventory.img"], err = readImage(dir, "inventory.img"); err != nil {
		return err
	}
	inv, err := one(images, "inventory.img", "", &msgInventoryEntry)
	if err != nil {
		return err
	}
	if v := inventoryVersion(inv); v != 1 && v != 2 {
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
	tasks := map[uint32]*pstreeEntry{}
	threads := map[uint32]bool{}
	var order []uint32
	var roots []uint32
	for i, b := range pst.entries {
		if err := decode(file, i, b, &msgPstreeEntry); err != nil {
			return err
		}
		e := readPstree(b)
		pid := e.pid
		if pid == 0 || tasks[pid] != nil {
			return invalid(file, "entry %d: bad or duplicate pid %d", i, pid)
		}
		if len(e.threads) == 0 {
			return invalid(file, "task %d has no threads", pid)
		}
		for _, tid := range e.threads {
			if tid == 0 || threads[tid] {
				return invalid(file, "task %d: bad or duplicate thread id %d", pid, tid)
			}
			threads[tid] = true
		}
		tasks[pid] = &e
		order = append(order, pid)
		if e.ppid == 0 {
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
		for p := pid; p != roots[0]; p = tasks[p].ppid {
			if tasks[p] == nil {
				return invalid(file, "task %d: ancestor %d is not in the tree", pid, p)
			}
			if seen++; seen > len(tasks) {
				return invalid(file, "task %d: parent chain has a cycle", pid)
			}
		}
	}
	for _, pid := range order {
		coreFile := fmt.Sprintf("core-%d.img", pid)
		core, err := one(images, coreFile, fmt.Sprintf("task %d in pstree.img", pid), &msgCoreEntry)
		if err != nil {
			return err
		}
		state, ok := taskState(core)
		if !ok {
			return invalid(coreFile, "no task_core entry for task %d", pid)
		}
		for _, tid := range tasks[pid].threads {
			if tid == pid {
				continue
			}
			f := fmt.Sprintf("core-%d.img", tid)
			if _, err := one(images, f, fmt.Sprintf("thread %d of task %d in pstree.img", tid, pid), &msgCoreEntry); err != nil {
				return err
			}
		}
		if state == taskDead || state == taskZombie {
			continue
		}
		why := fmt.Sprintf("live task %d in pstree.img", pid)
		if _, err := one(images, fmt.Sprintf("mm-%d.img", pid), why, &msgMmEntry); err != nil {
			return err
		}
		if f := fmt.Sprintf("pagemap-%d.img", pid); images[f] == nil {
			return invalid(f, "missing (%s)", why)
		}
		if _, err := one(images, fmt.Sprintf("ids-%d.img", pid), why, &msgTaskKobjIdsEntry); err != nil {
			return err
		}
		if _, err := one(images, fmt.Sprintf("fs-%d.img", pid), why, &msgFsEntry); err != nil {
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
		if err := decode(name, 0, img.entries[0], &msgPagemapHead); err != nil {
			return err
		}
		id := pagesID(img.entries[0])
		if prev, ok := owner[id]; ok {
			return invalid(name, "pages id %d already used by %s", id, prev)
		}
		owner[id] = name
		var present uint64
		for i, b := range img.entries[1:] {
			if err := decode(name, i+1, b, &msgPagemapEntry); err != nil {
				return err
			}
			present += uint64(presentPages(b))
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

// maxDescriptors bounds descriptors.json, which runc writes as three paths.
const maxDescriptors = 1 << 20

// checkDescriptors checks runc's descriptors.json: runc restore needs it to
// map the image's stdio, as a JSON array of exactly three strings.
func checkDescriptors(dir string) error {
	const file = "descriptors.json"
	f, st, err := openRegular(filepath.Join(dir, file))
	if errors.Is(err, os.ErrNotExist) {
		return invalid(file, "missing (runc restore needs it)")
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalid, file, err)
	}
	defer f.Close()
	if st.Size() > maxDescriptors {
		return invalid(file, "%d bytes, more than runc writes", st.Size())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxDescriptors))
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
