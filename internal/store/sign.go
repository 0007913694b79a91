package store

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"syscall"
	"time"
)

// Signed checkpoints (optional: a key file named in the configuration). Publish lists every
// file with its SHA-256 and signs the manifest with HMAC-SHA256 over its JSON encoding with
// the signature left empty; Validate then refuses a checkpoint that is unsigned, whose
// signature does not match, or whose files do not match their digests. Anyone who can
// write the store but does not hold the key can neither plant a checkpoint nor change one.

// ErrSignature is wrapped when a signed store meets an unsigned or tampered checkpoint.
var ErrSignature = errors.New("checkpoint signature")

// ReadSigningKey reads a signing key file: it must be a regular file owned by root (or
// this process's user) that no one else may read or write, holding at least 32 bytes.
func ReadSigningKey(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscallNoFollow, 0)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("signing key %s: not a regular file", path)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("signing key %s: owned by uid %d, not %d", path, sys.Uid, os.Geteuid())
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("signing key %s: mode %04o, want 0600 or tighter", path, st.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<16))
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if len(b) < 32 {
		return nil, fmt.Errorf("signing key %s: %d bytes, want at least 32", path, len(b))
	}
	return b, nil
}

// signature is the HMAC of the manifest with its signature empty.
func signature(key []byte, m *Manifest) (string, error) {
	c := *m
	c.Signature = ""
	b, err := json.Marshal(&c)
	if err != nil {
		return "", fmt.Errorf("manifest: %w", err)
	}
	h := hmac.New(sha256.New, key)
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// sign fills in every file's digest and the signature, when the store signs.
func (s Store) sign(dir string, m *Manifest) error {
	m.Signature = ""
	if len(s.SigningKey) == 0 {
		return nil
	}
	sums, err := digests(dir, m.Files)
	if err != nil {
		return err
	}
	for i := range m.Files {
		m.Files[i].SHA256 = sums[i]
	}
	m.Signature, err = signature(s.SigningKey, m)
	return err
}

// verifyRate is the digest rate a validation deadline allows for: a seventh of what one
// core hashed on the project's machines (1.4 GB per CPU-second, SHA-NI), for a busy node.
const verifyRate = 200e6 // bytes per second

// VerifyAllowance is the time a validation of m needs beyond its fixed deadline to hash
// its files: zero when the store does not sign. Without it a good, large signed checkpoint
// (11 GB at the default 10 s) would fail validation on time alone and be set aside.
func (s Store) VerifyAllowance(m *Manifest) time.Duration {
	if len(s.SigningKey) == 0 || m == nil {
		return 0
	}
	var n int64
	for _, f := range m.Files {
		if f.Size > 0 {
			n += f.Size
		}
	}
	return time.Duration(float64(n) / verifyRate * float64(time.Second))
}

// verify checks the signature and then every file's digest, when the store signs.
func (s Store) verify(dir string, m *Manifest) error {
	if len(s.SigningKey) == 0 {
		return nil
	}
	if m.Signature == "" {
		return fmt.Errorf("%w: the checkpoint is not signed, and this node requires signatures", ErrSignature)
	}
	want, err := signature(s.SigningKey, m)
	if err != nil {
		return err
	}
	if !hmac.Equal([]byte(want), []byte(m.Signature)) {
		return fmt.Errorf("%w: the manifest does not match its signature (tampered, or signed with another key)", ErrSignature)
	}
	sums, err := digests(dir, m.Files)
	if err != nil {
		return err
	}
	for i, f := range m.Files {
		if f.SHA256 == "" || sums[i] != f.SHA256 {
			return fmt.Errorf("%w: %q does not match its digest", ErrSignature, f.Path)
		}
	}
	return nil
}

// digests hashes files (relative to dir) on every core, largest first.
func digests(dir string, files []File) ([]string, error) {
	sums := make([]string, len(files))
	work := make(chan int)
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	for range max(1, min(runtime.GOMAXPROCS(0), len(files))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for i := range work {
				sums[i], errs[i] = digest(filepath.Join(dir, filepath.FromSlash(files[i].Path)), buf)
			}
		}()
	}
	order := make([]int, len(files))
	for i := range order {
		order[i] = i
	}
	// Largest first, so that one big pages image does not start last.
	sort.Slice(order, func(a, b int) bool { return files[order[a]].Size > files[order[b]].Size })
	for _, i := range order {
		work <- i
	}
	close(work)
	wg.Wait()
	return sums, errors.Join(errs...)
}

func digest(path string, buf []byte) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscallNoFollow, 0)
	if err != nil {
		return "", fmt.Errorf("digest: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, struct{ io.Reader }{f}, buf); err != nil {
		return "", fmt.Errorf("digest %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
