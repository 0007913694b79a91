// Package deadline bounds checks that can hang (a stat or a read on a network filesystem
// whose server is gone): the caller stops waiting; the stuck goroutine is abandoned.
package deadline

import (
	"errors"
	"fmt"
	"time"
)

// ErrNoAnswer is wrapped when f did not return in time.
var ErrNoAnswer = errors.New("no answer")

// Run runs f and gives up waiting after d.
func Run[T any](d time.Duration, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-timer.C:
		var zero T
		return zero, fmt.Errorf("%w within %s", ErrNoAnswer, d)
	}
}
