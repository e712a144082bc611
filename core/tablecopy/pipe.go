package tablecopy

import (
	"io"
	"sync"
)

// chunkPipe carries the COPY stream from the goroutine reading the origin to
// the one writing the replica, in memory, through a few buffered chunks:
// unlike io.Pipe, whose Write waits until the reader has taken everything,
// reading the origin goes on while the replica is being written.
type chunkPipe struct {
	full chan []byte // chunks written, in order
	free chan []byte // chunks the reader is done with
	size int

	cur []byte // the writer's chunk being filled

	rd   []byte // what is left of the reader's chunk
	rbuf []byte // that chunk, to give back
	werr error  // why the writer stopped (nil: end of data); read after full is closed

	stop     chan struct{} // closed when the reader gives up
	stopOnce sync.Once
	rerr     error // why the reader gave up
}

const (
	chunkSize   = 256 << 10
	chunksAhead = 8
)

func newChunkPipe() *chunkPipe {
	return &chunkPipe{full: make(chan []byte, chunksAhead), free: make(chan []byte, chunksAhead+1),
		size: chunkSize, stop: make(chan struct{})}
}

// Write buffers p; it blocks only when chunksAhead chunks wait for the reader.
func (p *chunkPipe) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		if p.cur == nil {
			select {
			case p.cur = <-p.free:
				p.cur = p.cur[:0]
			default:
				p.cur = make([]byte, 0, p.size)
			}
		}
		k := min(len(b), p.size-len(p.cur))
		p.cur = append(p.cur, b[:k]...)
		b = b[k:]
		if len(p.cur) == p.size {
			if err := p.send(); err != nil {
				return n - len(b), err
			}
		}
	}
	return n, nil
}

func (p *chunkPipe) send() error {
	select {
	case p.full <- p.cur:
		p.cur = nil
		return nil
	case <-p.stop:
		return p.rerr
	}
}

// CloseWrite ends the stream: the reader gets what was written, then err
// (io.EOF when err is nil).
func (p *chunkPipe) CloseWrite(err error) {
	if err == nil && len(p.cur) > 0 {
		err = p.send()
	}
	p.werr = err
	close(p.full)
}

// Read returns the next bytes of the stream.
func (p *chunkPipe) Read(b []byte) (int, error) {
	if len(p.rd) == 0 {
		if p.rbuf != nil {
			select {
			case p.free <- p.rbuf:
			default:
			}
			p.rbuf = nil
		}
		chunk, ok := <-p.full
		if !ok {
			if p.werr != nil {
				return 0, p.werr
			}
			return 0, io.EOF
		}
		p.rd, p.rbuf = chunk, chunk
	}
	n := copy(b, p.rd)
	p.rd = p.rd[n:]
	return n, nil
}

// CloseRead stops the stream from the reader's side: a blocked or later
// Write returns err.
func (p *chunkPipe) CloseRead(err error) {
	p.stopOnce.Do(func() {
		p.rerr = err
		close(p.stop)
	})
}
