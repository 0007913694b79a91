package store

import (
	"testing"
	"time"
)

// A signed checkpoint's validation gets time to hash its files, at a rate far below what
// one core does; an unsigned one needs none.
func TestVerifyAllowance(t *testing.T) {
	m := &Manifest{Files: []File{{Path: "images/pages-1.img", Size: 20e9}, {Path: "manifest", Size: -5}}}
	if got := (Store{}).VerifyAllowance(m); got != 0 {
		t.Errorf("unsigned: %v", got)
	}
	if got := (Store{SigningKey: []byte("k")}).VerifyAllowance(m); got != 100*time.Second {
		t.Errorf("signed 20 GB: %v, want 100s", got)
	}
}
