package sidebyside

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// proc is one child process, driven line by line over its stdin/stdout.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // stdout lines; closed at EOF
	stderr *lockedBuffer
	done   chan struct{} // closed when Wait returned
	state  *os.ProcessState
	cpu0   int64
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 64<<10 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(l.b.String())
}

// startProc starts exe as a child with args and waits for its "ready"
// line, whose rest it returns. The process is killed when ctx ends.
func startProc(ctx context.Context, exe, name string, args ...string) (*proc, string, error) {
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.SysProcAttr = childSysProcAttr()
	cmd.WaitDelay = 2 * time.Second
	p := &proc{name: name, cmd: cmd, lines: make(chan string, 16), stderr: new(lockedBuffer), done: make(chan struct{})}
	cmd.Stderr = p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	go func() { // owned by p: ends at the child's stdout EOF
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	go func() { // owned by p: ends when the child exits
		_ = cmd.Wait()
		p.state = cmd.ProcessState
		close(p.done)
	}()
	line, err := p.read(30 * time.Second)
	if err != nil {
		p.kill()
		return nil, "", err
	}
	info, ok := strings.CutPrefix(line, "ready ")
	if !ok {
		p.kill()
		return nil, "", p.fail(fmt.Errorf("started with %q", line))
	}
	return p, info, nil
}

func (p *proc) fail(err error) error {
	if s := p.stderr.String(); s != "" {
		return fmt.Errorf("%s: %w (stderr: %s)", p.name, err, s)
	}
	return fmt.Errorf("%s: %w", p.name, err)
}

func (p *proc) read(timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case line, ok := <-p.lines:
		if !ok {
			<-p.done
			return "", p.fail(fmt.Errorf("exited: %v", p.state))
		}
		if msg, isErr := strings.CutPrefix(line, "error "); isErr {
			return "", p.fail(fmt.Errorf("%s", msg))
		}
		return line, nil
	case <-t.C:
		return "", p.fail(fmt.Errorf("no answer within %v", timeout))
	}
}

// call sends one command and returns the answer line.
func (p *proc) call(cmd string, timeout time.Duration) (string, error) {
	if _, err := io.WriteString(p.stdin, cmd+"\n"); err != nil {
		return "", p.fail(err)
	}
	return p.read(timeout)
}

// cpu returns the child's user+system CPU so far, in µs.
func (p *proc) cpu() (int64, error) {
	line, err := p.call("cpu", 10*time.Second)
	if err != nil {
		return 0, err
	}
	var v int64
	_, err = fmt.Sscan(line, &v)
	return v, err
}

// stop closes the child's stdin (it exits) and kills it if it has not
// exited within a few seconds. It returns an error unless the child exited
// by itself with status 0 (under -race, a race report makes it fail).
func (p *proc) stop() error {
	_ = p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.kill()
		return p.fail(errors.New("did not exit within 5s of its stdin closing; killed"))
	}
	if !p.state.Success() {
		return p.fail(fmt.Errorf("exited with %v", p.state))
	}
	return nil
}

func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}
