package deadline

import (
	"errors"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	v, err := Run(time.Second, func() (int, error) { return 7, nil })
	if v != 7 || err != nil {
		t.Errorf("Run = %d, %v", v, err)
	}
	boom := errors.New("boom")
	if _, err := Run(time.Second, func() (int, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Errorf("Run error = %v", err)
	}
	block := make(chan struct{})
	defer close(block)
	_, err = Run(10*time.Millisecond, func() (int, error) { <-block; return 1, nil })
	if !errors.Is(err, ErrNoAnswer) || err.Error() != "no answer within 10ms" {
		t.Errorf("Run of a stuck f = %v", err)
	}
}
