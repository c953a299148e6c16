package app

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// prSetTimerSlack is PR_SET_TIMERSLACK of prctl(2).
const prSetTimerSlack = 29

// SetTimerSlack sets the timer slack of every thread of the process to d: how much later than
// asked the kernel may end a thread's timed sleep, so that it can serve several wake-ups with
// one. Threads made later inherit it from the thread that makes them. d <= 0 leaves the
// kernel's default (50µs, or what the parent process set) alone.
//
// Why the gateway sets it: the Go runtime's system monitor thread sleeps 20µs at a time
// whenever the process has come out of idle, then backs off; a gateway at moderate load comes
// out of idle thousands of times a second, so the monitor wakes thousands of times a second,
// and on a shared core each of its wake-ups also preempts the thread that serves requests. With
// a slack of 1ms those 20µs sleeps last up to about a millisecond (docs/benchmarks.md, "Where
// the context switches come from"). What else it changes: timers (deadlines, tickers) may
// fire up to d late, and the monitor notices a goroutine stuck in a blocking system call up to
// d later.
//
// It uses syscall.AllThreadsSyscall, which a binary linked with cgo cannot; there it writes
// each thread's /proc/self/task/<tid>/timerslack_ns instead, which for threads other than the
// calling one needs CAP_SYS_NICE. Call it early, before the server has made many threads.
func SetTimerSlack(d time.Duration) error {
	if d <= 0 {
		return nil
	}
	_, _, errno := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, prSetTimerSlack, uintptr(d.Nanoseconds()), 0)
	if errno == 0 {
		return nil
	}
	if errno != syscall.ENOTSUP {
		return fmt.Errorf("timer slack: prctl: %w", errno)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("timer slack: %w", err)
	}
	value := []byte(strconv.FormatInt(d.Nanoseconds(), 10))
	for _, t := range tasks {
		// A thread's own directory, /proc/<tid>, has the file; /proc/self/task/<tid> does not.
		err := os.WriteFile("/proc/"+t.Name()+"/timerslack_ns", value, 0)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrNotExist):
			if _, serr := os.Stat("/proc/self/task/" + t.Name()); serr == nil {
				return fmt.Errorf("timer slack: the kernel has no timerslack_ns (Linux 4.6 or later): %w", err)
			} // else the thread has ended
		case errors.Is(err, os.ErrPermission):
			return fmt.Errorf("timer slack: this binary is linked with cgo, and setting another thread's slack needs CAP_SYS_NICE (build with CGO_ENABLED=0, as the image does): %w", err)
		default:
			return fmt.Errorf("timer slack: %w", err)
		}
	}
	return nil
}
