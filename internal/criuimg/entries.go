package criuimg

// The fields Validate and the stats readers read, from entries that check
// accepted against the message named in each comment. The differential tests
// compare each with go-criu's generated getters.

// Values of task_core_entry.task_state and pagemap_entry.flags (CRIU's
// compel task-state.h and pagemap.h).
const (
	taskAlive  = 1
	taskDead   = 2 // a zombie: CRIU dumps only its core image
	taskZombie = 6 // compel's name for the same; tolerated in case an image carries it

	pePresent = 1 << 2 // the pages are in this image's pages-<id>.img
	peParent  = 1 << 0 // the pages are in the parent (pre-dump) image
)

func u32(num uint32, parts ...[]byte) uint32 {
	v, _ := uintField(num, parts...)
	return uint32(v)
}

// inventoryVersion reads inventory_entry.img_version.
func inventoryVersion(b []byte) uint32 { return u32(1, b) }

// pstreeEntry is a pstree_entry: pid, ppid and threads.
type pstreeEntry struct {
	pid, ppid uint32
	threads   []uint32
}

func readPstree(b []byte) pstreeEntry {
	return pstreeEntry{pid: u32(1, b), ppid: u32(2, b), threads: uint32s(b, 5)}
}

// taskState reads core_entry.tc.task_state, and whether the core has a tc.
func taskState(b []byte) (uint32, bool) {
	tc := occurrences(b, 3)
	return u32(1, tc...), len(tc) > 0
}

// pagesID reads pagemap_head.pages_id.
func pagesID(b []byte) uint32 { return u32(1, b) }

// presentPages reads a pagemap_entry: its nr_pages if its pages are in the
// pages file, else 0. Images older than the flags field have in_parent.
func presentPages(b []byte) uint32 {
	flags, ok := uintField(4, b)
	if !ok {
		flags = pePresent
		if inParent, _ := uintField(3, b); inParent != 0 {
			flags = peParent
		}
	}
	if uint32(flags)&pePresent == 0 {
		return 0
	}
	return u32(2, b)
}

// payloadEntry returns the message of the entries of an image in which each
// entry is followed by raw bytes, or nil. (The entries of IPCNS_MSG and
// GHOST_FILE alternate two messages, see rawAfter.)
func payloadEntry(magic string) *message {
	switch magic {
	case "PIPES_DATA", "FIFO_DATA":
		return &msgPipeDataEntry
	case "SK_QUEUES":
		return &msgSkPacketEntry
	case "TCP_STREAM":
		return &msgTcpStreamEntry
	case "BPFMAP_DATA":
		return &msgBpfmapDataEntry
	case "IPCNS_SEM":
		return &msgIpcSemEntry
	case "IPCNS_SHM":
		return &msgIpcShmEntry
	}
	return nil
}

// payloadSize reads how many raw bytes follow an entry of such an image.
func payloadSize(magic string, b []byte) uint64 {
	switch magic {
	case "PIPES_DATA", "FIFO_DATA": // pipe_data_entry.bytes
		return uint64(u32(2, b))
	case "SK_QUEUES": // sk_packet_entry.length
		return uint64(u32(2, b))
	case "TCP_STREAM": // tcp_stream_entry.inq_len + outq_len
		return uint64(u32(1, b)) + uint64(u32(3, b))
	case "BPFMAP_DATA": // bpfmap_data_entry.keys_bytes + values_bytes
		return uint64(u32(2, b)) + uint64(u32(3, b))
	case "IPCNS_SEM": // ipc_sem_entry.nsems u16 values, 64-bit aligned
		return roundUp(2*uint64(u32(2, b)), 8)
	case "IPCNS_SHM": // ipc_shm_entry: older CRIU wrote the segment inline
		if inPagemaps, _ := uintField(3, b); inPagemaps != 0 {
			return 0
		}
		size, _ := uintField(2, b)
		return roundUp(size, 4)
	}
	return 0
}

// msgQueueLen reads ipc_msg_entry.qnum, and msgTextLen the (64-bit aligned)
// size of the text that follows an ipc_msg.
func msgQueueLen(b []byte) uint32 { return u32(3, b) }
func msgTextLen(b []byte) uint64  { return roundUp(uint64(u32(2, b)), 8) }

// ghostChunked reads ghost_file_entry.chunks, and ghostChunkLen
// ghost_chunk_entry.len.
func ghostChunked(b []byte) bool {
	v, _ := uintField(9, b)
	return v != 0
}

func ghostChunkLen(b []byte) uint64 {
	v, _ := uintField(1, b)
	return v
}

// dumpStats reads stats_entry.dump, if there is one.
func dumpStats(b []byte) (*DumpStats, bool) {
	d := occurrences(b, 1)
	if len(d) == 0 {
		return nil, false
	}
	u64 := func(num uint32) uint64 { v, _ := uintField(num, d...); return v }
	return &DumpStats{
		FreezingTime: u32(1, d...),
		FrozenTime:   u32(2, d...),
		MemdumpTime:  u32(3, d...),
		MemwriteTime: u32(4, d...),
		PagesScanned: u64(5),
		PagesWritten: u64(7),
	}, true
}

// restoreStats reads stats_entry.restore, if there is one.
func restoreStats(b []byte) (*RestoreStats, bool) {
	r := occurrences(b, 2)
	if len(r) == 0 {
		return nil, false
	}
	pages, _ := uintField(5, r...)
	return &RestoreStats{
		ForkingTime:   u32(3, r...),
		RestoreTime:   u32(4, r...),
		PagesRestored: pages,
	}, true
}
