package fakecuda

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// deviceSuffixes follow $FAKECUDA_DEV as the real nodes follow /dev/nvidia.
var deviceSuffixes = []string{"0", "ctl", "-uvm", "-uvm-tools"}

const page = 4096

// ProcessMain is a fake CUDA process: it opens (or with -map, maps) the fake device files,
// maps $FAKECUDA_LIB as the driver's library, records itself in $FAKECUDA_DIR as a running
// CUDA process holding -mib MiB (unless -nocuda: a process that holds the GPU without CUDA
// state), prints "ready", and waits. SIGUSR1 makes it let go of its devices, SIGUSR2 take
// them again (the fake cuda-checkpoint's checkpoint and restore); SIGTERM ends it.
func ProcessMain() int {
	fl := flag.NewFlagSet("cudaproc", flag.ContinueOnError)
	mib := fl.Uint64("mib", 1024, "MiB held on the GPU")
	mapOnly := fl.Bool("map", false, "map the devices and close them, rather than hold them open")
	noCUDA := fl.Bool("nocuda", false, "hold the devices without CUDA state")
	if err := fl.Parse(os.Args[1:]); err != nil {
		return 2
	}
	prefix := os.Getenv("FAKECUDA_DEV")
	if prefix == "" || (!*noCUDA && dir() == "") {
		fmt.Fprintln(os.Stderr, "cudaproc: set FAKECUDA_DEV (and FAKECUDA_DIR)")
		return 2
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTERM, syscall.SIGINT)

	d := &devices{prefix: prefix, mapOnly: *mapOnly}
	if err := d.take(); err != nil {
		fmt.Fprintf(os.Stderr, "cudaproc: %v\n", err)
		return 1
	}
	if lib := os.Getenv("FAKECUDA_LIB"); lib != "" {
		if _, err := mapFile(lib, syscall.MAP_PRIVATE); err != nil {
			fmt.Fprintf(os.Stderr, "cudaproc: %v\n", err)
			return 1
		}
	}
	pid := os.Getpid()
	if !*noCUDA {
		if err := save(pid, &pstate{State: running, MiB: *mib, Start: startTime(pid)}); err != nil {
			fmt.Fprintf(os.Stderr, "cudaproc: %v\n", err)
			return 1
		}
		defer os.Remove(statePath(pid))
		defer os.Remove(ackPath(pid))
		if err := writeAtomic(ackPath(pid), []byte("open")); err != nil {
			fmt.Fprintf(os.Stderr, "cudaproc: %v\n", err)
			return 1
		}
	}
	fmt.Println("ready")
	for s := range sigs {
		var err error
		switch s {
		case syscall.SIGUSR1:
			if err = d.release(); err == nil {
				err = writeAtomic(ackPath(pid), []byte("closed"))
			}
		case syscall.SIGUSR2:
			if err = d.take(); err == nil {
				err = writeAtomic(ackPath(pid), []byte("open"))
			}
		default:
			return 0
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "cudaproc: %v\n", err)
			return 1
		}
	}
	return 0
}

// devices are the fake device files a process holds: open files, or mappings.
type devices struct {
	prefix  string
	mapOnly bool
	files   []*os.File
	maps    [][]byte
}

func (d *devices) take() error {
	for _, s := range deviceSuffixes {
		if d.mapOnly {
			m, err := mapFile(d.prefix+s, syscall.MAP_SHARED)
			if err != nil {
				return err
			}
			d.maps = append(d.maps, m)
			continue
		}
		f, err := openDevice(d.prefix + s)
		if err != nil {
			return err
		}
		d.files = append(d.files, f)
	}
	return nil
}

func (d *devices) release() error {
	for _, f := range d.files {
		if err := f.Close(); err != nil {
			return err
		}
	}
	for _, m := range d.maps {
		if err := syscall.Munmap(m); err != nil {
			return err
		}
	}
	d.files, d.maps = nil, nil
	return nil
}

// openDevice opens a fake device file, made a page long so that it can be mapped.
func openDevice(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err == nil && st.Size() < page {
		err = f.Truncate(page)
		if err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// mapFile maps a page of the file and closes it: the mapping alone stays.
func mapFile(path string, flags int) ([]byte, error) {
	f, err := openDevice(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, err := syscall.Mmap(int(f.Fd()), 0, page, syscall.PROT_READ, flags)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	return m, nil
}
