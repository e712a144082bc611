package tablecopy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// binaryCopy builds a COPY binary stream of rows with the given field
// lengths (-1 is NULL), with a header extension of ext bytes.
func binaryCopy(rows [][]int, ext int) []byte {
	var b bytes.Buffer
	b.WriteString("PGCOPY\n\xff\r\n\x00")
	binary.Write(&b, binary.BigEndian, uint32(0))
	binary.Write(&b, binary.BigEndian, uint32(ext))
	b.Write(make([]byte, ext))
	for _, r := range rows {
		binary.Write(&b, binary.BigEndian, int16(len(r)))
		for _, n := range r {
			binary.Write(&b, binary.BigEndian, int32(n))
			if n > 0 {
				b.Write(bytes.Repeat([]byte{'\n'}, n)) // newlines must not be counted in binary
			}
		}
	}
	binary.Write(&b, binary.BigEndian, int16(-1))
	return b.Bytes()
}

func TestRowCounterBinaryAnyChunking(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var rows [][]int
	for range 500 {
		r := make([]int, rng.IntN(5))
		for i := range r {
			r[i] = rng.IntN(40) - 1
		}
		rows = append(rows, r)
	}
	for _, ext := range []int{0, 7} {
		stream := binaryCopy(rows, ext)
		for _, max := range []int{1, 2, 3, 5, 64, len(stream)} {
			c := newRowCounter(true)
			for rest := stream; len(rest) > 0; {
				n := min(len(rest), 1+rng.IntN(max))
				c.feed(rest[:n])
				rest = rest[n:]
			}
			if c.rows != 500 || !c.trailer {
				t.Fatalf("ext %d, chunks up to %d bytes: counted %d rows (trailer %v), want 500", ext, max, c.rows, c.trailer)
			}
		}
	}
}

func TestRowCounterText(t *testing.T) {
	c := newRowCounter(false)
	c.feed([]byte("1\ta\\nb\n2\t"))
	c.feed([]byte("x\n"))
	if c.rows != 2 {
		t.Fatalf("counted %d rows, want 2", c.rows)
	}
}

func TestChunkPipeCarriesEverythingInOrder(t *testing.T) {
	p := newChunkPipe()
	want := make([]byte, 3*chunkSize+12345)
	for i := range want {
		want[i] = byte(i * 7)
	}
	go func() {
		for rest := want; len(rest) > 0; {
			n := min(len(rest), 1000)
			p.Write(rest[:n])
			rest = rest[n:]
		}
		p.CloseWrite(nil)
	}()
	got, err := io.ReadAll(p)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (%v), want %d equal bytes", len(got), err, len(want))
	}
}

func TestChunkPipeErrors(t *testing.T) {
	p := newChunkPipe()
	boom := errors.New("origin gone")
	go func() {
		p.Write([]byte("abc"))
		p.CloseWrite(boom)
	}()
	if _, err := io.ReadAll(p); !errors.Is(err, boom) {
		t.Fatalf("reader got %v, want the writer's error", err)
	}
	// A reader that stops unblocks a writer waiting for room.
	p = newChunkPipe()
	stopped := errors.New("replica gone")
	done := make(chan error)
	go func() {
		_, err := p.Write(make([]byte, (chunksAhead+2)*chunkSize))
		done <- err
	}()
	p.CloseRead(stopped)
	if err := <-done; !errors.Is(err, stopped) {
		t.Fatalf("writer got %v, want the reader's error", err)
	}
}
