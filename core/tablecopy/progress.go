package tablecopy

import (
	"encoding/binary"
	"time"

	"pgreplica/core/pg"
)

// Progress is where the copy of one table to one replica stands. Sync
// reports it when a table starts, about twice a second while it is copied,
// and once when it is done (Done, with the final counts).
type Progress struct {
	Replica    string
	Table      pg.Table
	Rows       int64         // rows copied so far
	Bytes      int64         // bytes of COPY data streamed so far
	TotalRows  int64         // the origin's estimate (pg_class.reltuples); 0 when unknown
	TotalBytes int64         // the origin's table size on disk (pg_relation_size)
	Done       bool          // the table's copy has committed on the replica
	Took       time.Duration // since the table's copy started
}

// RowsPerSecond is the copy rate so far.
func (p Progress) RowsPerSecond() float64 {
	if p.Took <= 0 {
		return 0
	}
	return float64(p.Rows) / p.Took.Seconds()
}

// BytesPerSecond is the streaming rate so far.
func (p Progress) BytesPerSecond() float64 {
	if p.Took <= 0 {
		return 0
	}
	return float64(p.Bytes) / p.Took.Seconds()
}

// Fraction is how much of the table is copied (0..1), from the row estimate;
// -1 when there is no estimate.
func (p Progress) Fraction() float64 {
	if p.Done {
		return 1
	}
	if p.TotalRows <= 0 {
		return -1
	}
	f := float64(p.Rows) / float64(p.TotalRows)
	if f > 0.99 {
		f = 0.99 // the estimate is only an estimate
	}
	return f
}

// ETA is the time left at the rate so far, from the row estimate; 0 when
// done or unknown.
func (p Progress) ETA() time.Duration {
	f := p.Fraction()
	if p.Done || f <= 0 || p.Took <= 0 {
		return 0
	}
	return time.Duration(float64(p.Took) * (1 - f) / f)
}

// rowCounter counts the rows of a COPY data stream as it passes, without
// keeping it: lines in text format, tuples in binary format (walking the
// field lengths, so the cost is per field, not per byte).
type rowCounter struct {
	binary bool
	rows   int64

	// binary format state
	stage   int    // what is being read, see below
	need    int    // bytes still wanted for the item in hdr
	hdr     []byte // the partial fixed-size item being read
	fields  int    // fields left in the current tuple
	skip    int64  // data bytes left to skip
	trailer bool   // the end marker was seen
}

// binary stages
const (
	stageSignature = iota // 11-byte signature + 4-byte flags + 4-byte extension length
	stageExtension        // skip the header extension
	stageTuple            // 2-byte field count (-1: end)
	stageField            // 4-byte field length (-1: NULL)
	stageData             // skip the field's bytes
)

func newRowCounter(binaryFormat bool) *rowCounter {
	c := &rowCounter{binary: binaryFormat}
	if binaryFormat {
		c.stage, c.need = stageSignature, 19
	}
	return c
}

// feed counts the rows in the next chunk of the stream.
func (c *rowCounter) feed(p []byte) {
	if !c.binary {
		for _, b := range p {
			if b == '\n' {
				c.rows++
			}
		}
		return
	}
	for len(p) > 0 && !c.trailer {
		if c.stage == stageExtension || c.stage == stageData {
			n := int64(len(p))
			if n > c.skip {
				n = c.skip
			}
			p = p[n:]
			c.skip -= n
			if c.skip == 0 {
				c.stage = c.nextAfterData()
			}
			continue
		}
		// A fixed-size item: gather c.need bytes into hdr.
		n := c.need - len(c.hdr)
		if n > len(p) {
			n = len(p)
		}
		c.hdr = append(c.hdr, p[:n]...)
		p = p[n:]
		if len(c.hdr) < c.need {
			return
		}
		c.item(c.hdr)
		c.hdr = c.hdr[:0]
	}
}

// nextAfterData is the stage after skipped bytes: the next field of the
// tuple, or the next tuple.
func (c *rowCounter) nextAfterData() int {
	if c.stage == stageExtension {
		c.need = 2
		return stageTuple
	}
	return c.endField()
}

func (c *rowCounter) endField() int {
	c.fields--
	if c.fields > 0 {
		c.need = 4
		return stageField
	}
	c.rows++
	c.need = 2
	return stageTuple
}

// item handles one complete fixed-size item.
func (c *rowCounter) item(h []byte) {
	switch c.stage {
	case stageSignature:
		c.skip = int64(binary.BigEndian.Uint32(h[15:19]))
		if c.skip > 0 {
			c.stage = stageExtension
		} else {
			c.stage, c.need = stageTuple, 2
		}
	case stageTuple:
		n := int16(binary.BigEndian.Uint16(h))
		switch {
		case n < 0:
			c.trailer = true
		case n == 0:
			c.rows++
			c.need = 2
		default:
			c.fields, c.stage, c.need = int(n), stageField, 4
		}
	case stageField:
		n := int32(binary.BigEndian.Uint32(h))
		if n <= 0 { // NULL or empty
			c.stage = c.endField()
			return
		}
		c.skip, c.stage = int64(n), stageData
	}
}
