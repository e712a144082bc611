// Package bundle carries a replication set's changes to a file replica, a
// replica that cannot reach the origin (a DMZ, an air-gapped site, a site
// reached by a nightly transfer): rserv's PrepareSnapshot, ApplySnapshot and
// MasterSync, done with the engine's guarantees.
//
// Export reads the events after the replica's last exported position with
// the engine's reader (cut by transaction snapshots, in apply order) and
// writes them into bundle files; Import applies each bundle on the replica
// in one transaction with its position, exactly once and in sequence; an
// acknowledgement file carries the replica's position back, and Ack records
// it on the origin, where the purge respects it.
//
// A bundle is a zstd stream (optionally encrypted to age recipients) of
// newline-terminated lines: a JSON header, the body, and a JSON trailer
// with the SHA-256 of every byte before it. The body of an events bundle is
// one JSON line per event; that of a base bundle is, per table, a JSON line
// naming it followed by its rows in COPY text format and a line "\.".
package bundle

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"

	"pgreplica/core/pg"
	"pgreplica/core/replay"
)

// FormatVersion is the version of the bundle format written here.
const FormatVersion = 1

// The kinds of bundle files.
const (
	KindBase   = "base"   // a consistent copy of every selected table
	KindEvents = "events" // the events of a stretch of the log
	KindAck    = "ack"    // an acknowledgement: the replica's position
)

// Point is a position in a set's history: every transaction visible in
// Snapshot, and, while an interval is cut over several bundles, the events
// of the interval up to Target with ids up to LastID.
type Point struct {
	Snapshot replay.Snapshot `json:"snapshot"`
	Target   replay.Snapshot `json:"target"`
	LastID   int64           `json:"last_id"`
}

// Position is the point as the replica stores it.
func (p Point) Position() replay.Position {
	return replay.Position{Snapshot: p.Snapshot, Target: p.Target, LastID: p.LastID}
}

// Equal reports whether p and o are the same point.
func (p Point) Equal(o Point) bool {
	return p.Snapshot.String() == o.Snapshot.String() && p.Target.String() == o.Target.String() && p.LastID == o.LastID
}

func (p Point) String() string {
	if p.Target.IsZero() {
		return p.Snapshot.String()
	}
	return fmt.Sprintf("%s (towards %s, after event %d)", p.Snapshot, p.Target, p.LastID)
}

// PointOf is the point of a stored position.
func PointOf(p replay.Position) Point {
	return Point{Snapshot: p.Snapshot, Target: p.Target, LastID: p.LastID}
}

// Header is the first line of a bundle.
type Header struct {
	Format  int    `json:"pgreplica_bundle"`
	Kind    string `json:"kind"`
	Set     string `json:"set"`
	Replica string `json:"replica"`
	Seq     int64  `json:"seq"`
	From    Point  `json:"from"` // zero for a base bundle
	To      Point  `json:"to"`
	Events  int64  `json:"events"`
	Tables  int    `json:"tables,omitempty"` // base: tables copied
	Rows    int64  `json:"rows,omitempty"`   // base: rows copied
	// Contents are a base bundle's tables (schema, name), in load order:
	// a table referenced by another's foreign key first.
	Contents       [][2]string `json:"contents,omitempty"`
	CaptureVersion string      `json:"capture_version"`
	CreatedAt      time.Time   `json:"created_at"`
}

// Name is the bundle's file name: set, replica, sequence number, kind.
func (h Header) Name() string {
	if h.Kind == KindAck {
		return fmt.Sprintf("%s-%s-%06d.ack", h.Set, h.Replica, h.Seq)
	}
	return fmt.Sprintf("%s-%s-%06d-%s.bundle", h.Set, h.Replica, h.Seq, h.Kind)
}

// Describe names the bundle for messages: "bundle 3 (events) of set shop for replica dmz".
func (h Header) Describe() string {
	return fmt.Sprintf("bundle %d (%s) of set %s for replica %s", h.Seq, h.Kind, h.Set, h.Replica)
}

// eventRecord is one event line of the body.
type eventRecord struct {
	ID     int64           `json:"id"`
	Txid   uint64          `json:"txid"`
	At     time.Time       `json:"at"`
	Schema string          `json:"schema"`
	Table  string          `json:"table"`
	Op     string          `json:"op"`
	Key    json.RawMessage `json:"key,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// tableRecord starts a table's rows in a base bundle.
type tableRecord struct {
	Schema    string     `json:"schema"`
	Name      string     `json:"name"`
	Columns   []string   `json:"columns"`
	Rows      int64      `json:"rows"`
	Sequences []Sequence `json:"sequences,omitempty"`
}

// Sequence is the value of a sequence owned by a column of a copied table.
type Sequence struct {
	Column string `json:"column"`
	Value  int64  `json:"value"`
}

type trailer struct {
	SHA256 string `json:"sha256"`
}

// record is one JSON line of the body or the trailer.
type record struct {
	Event   *eventRecord `json:"e,omitempty"`
	Table   *tableRecord `json:"table,omitempty"`
	Trailer *trailer     `json:"trailer,omitempty"`
}

// copyEnd ends a table's rows, as in COPY's text format.
var copyEnd = []byte("\\.\n")

// body collects a bundle's body in a temporary file until the header is
// known (the event count, the end position).
type body struct {
	f     *os.File
	w     *bufio.Writer
	enc   *json.Encoder
	bytes int64
	count *countingWriter
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func newBody(dir string) (*body, error) {
	f, err := os.CreateTemp(dir, ".pgreplica-body-*")
	if err != nil {
		return nil, fmt.Errorf("temporary file: %w", err)
	}
	b := &body{f: f, w: bufio.NewWriterSize(f, 1<<20)}
	b.count = &countingWriter{w: b.w}
	b.enc = json.NewEncoder(b.count)
	b.enc.SetEscapeHTML(false)
	return b, nil
}

// size is how many bytes the body holds so far.
func (b *body) size() int64 { return b.count.n }

func (b *body) event(c replay.Change) error {
	r := eventRecord{ID: c.ID, Txid: c.Txid, At: c.At, Schema: c.Table.Schema, Table: c.Table.Name, Op: string(c.Op)}
	if c.Key != nil {
		r.Key = c.Key
	}
	if c.Data != nil {
		r.Data = c.Data
	}
	return b.enc.Encode(record{Event: &r})
}

func (b *body) table(t tableRecord) error { return b.enc.Encode(record{Table: &t}) }

// Write appends raw bytes (COPY rows).
func (b *body) Write(p []byte) (int, error) { return b.count.Write(p) }

func (b *body) discard() {
	if b.f != nil {
		b.f.Close()
		os.Remove(b.f.Name())
		b.f = nil
	}
}

// Written is a bundle (or acknowledgement) file written.
type Written struct {
	Path   string
	Header Header
	Bytes  int64 // the file's size
	Raw    int64 // the content's size before compression
	SHA256 string
}

// finish writes the bundle file: header, body, trailer, compressed and
// (with recipients) encrypted, into dir under h.Name(). The file appears
// under its name only once complete (written to a temporary name, synced,
// renamed), and is never overwritten: writing a name that exists fails.
func (b *body) finish(dir string, h Header, recipients []age.Recipient) (Written, error) {
	defer b.discard()
	if err := b.w.Flush(); err != nil {
		return Written{}, fmt.Errorf("temporary file: %w", err)
	}
	if _, err := b.f.Seek(0, io.SeekStart); err != nil {
		return Written{}, fmt.Errorf("temporary file: %w", err)
	}
	return writeFile(dir, h, bufio.NewReaderSize(b.f, 1<<20), recipients, false)
}

// writeFile writes header, the body read from r, and the trailer.
// With replace, an existing file of the same name is replaced.
func writeFile(dir string, h Header, r io.Reader, recipients []age.Recipient, replace bool) (Written, error) {
	final := filepath.Join(dir, h.Name())
	if _, err := os.Stat(final); err == nil && !replace {
		return Written{}, fmt.Errorf("%s exists already; move it away or export to another directory", final)
	}
	f, err := os.CreateTemp(dir, "."+h.Name()+".*")
	if err != nil {
		return Written{}, fmt.Errorf("create bundle file: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	out := bufio.NewWriterSize(f, 1<<20)
	var dst io.Writer = out
	var enc io.WriteCloser
	if len(recipients) > 0 {
		if enc, err = age.Encrypt(out, recipients...); err != nil {
			return Written{}, fmt.Errorf("encrypt: %w", err)
		}
		dst = enc
	}
	zw, err := zstd.NewWriter(dst, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return Written{}, fmt.Errorf("compress: %w", err)
	}
	sum := sha256.New()
	raw := &countingWriter{w: io.MultiWriter(zw, sum)}
	line, err := json.Marshal(h)
	if err != nil {
		return Written{}, err
	}
	if _, err := raw.Write(append(line, '\n')); err != nil {
		return Written{}, fmt.Errorf("write bundle: %w", err)
	}
	if r != nil {
		if _, err := io.Copy(raw, r); err != nil {
			return Written{}, fmt.Errorf("write bundle: %w", err)
		}
	}
	digest := hex.EncodeToString(sum.Sum(nil))
	tl, err := json.Marshal(record{Trailer: &trailer{SHA256: digest}})
	if err != nil {
		return Written{}, err
	}
	n := raw.n
	if _, err := zw.Write(append(tl, '\n')); err != nil {
		return Written{}, fmt.Errorf("write bundle: %w", err)
	}
	if err := zw.Close(); err != nil {
		return Written{}, fmt.Errorf("write bundle: %w", err)
	}
	if enc != nil {
		if err := enc.Close(); err != nil {
			return Written{}, fmt.Errorf("write bundle: %w", err)
		}
	}
	if err := out.Flush(); err != nil {
		return Written{}, fmt.Errorf("write bundle: %w", err)
	}
	if err := f.Sync(); err != nil {
		return Written{}, fmt.Errorf("write bundle: %w", err)
	}
	size, _ := f.Seek(0, io.SeekCurrent)
	if err := f.Close(); err != nil {
		return Written{}, fmt.Errorf("write bundle: %w", err)
	}
	// A hard link never replaces a file; where links are not supported
	// (FAT, some network shares) a rename after the check above does.
	if replace {
		if err := os.Rename(f.Name(), final); err != nil {
			return Written{}, fmt.Errorf("write %s: %w", final, err)
		}
	} else if err := os.Link(f.Name(), final); err != nil {
		if errors.Is(err, os.ErrExist) {
			return Written{}, fmt.Errorf("%s exists already; move it away or export to another directory", final)
		}
		if err := os.Rename(f.Name(), final); err != nil {
			return Written{}, fmt.Errorf("write bundle: %w", err)
		}
	}
	os.Remove(f.Name())
	ok = true
	return Written{Path: final, Header: h, Bytes: size, Raw: n + int64(len(tl)) + 1, SHA256: digest}, nil
}

// ageMagic starts every age-encrypted file (binary format).
const ageMagic = "age-encryption.org/"

// DamagedError is a bundle that cannot be trusted: corrupt, truncated, or
// not a bundle. Nothing of it was applied.
type DamagedError struct {
	Path string
	Err  error
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("bundle %s is damaged or truncated (%v); nothing of it was applied: copy it again from the origin's export directory", e.Path, e.Err)
}

func (e *DamagedError) Unwrap() error { return e.Err }

// Reader reads a bundle file: the header first, then the body, checking
// the checksum at the end.
type Reader struct {
	Path   string
	Header Header

	f      *os.File
	zr     *zstd.Decoder
	br     *bufio.Reader
	sum    hash.Hash
	done   bool   // the trailer was read and matched
	digest string // then: the content's SHA-256, hex
}

// sha is the content's verified SHA-256 once the whole bundle was read.
func (r *Reader) sha() string { return r.digest }

// Open opens a bundle and reads its header. identities decrypt an
// encrypted bundle.
func Open(path string, identities []age.Identity) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open bundle: %w", err)
	}
	r := &Reader{Path: path, f: f, sum: sha256.New()}
	fail := func(err error) (*Reader, error) {
		r.Close()
		return nil, err
	}
	in := bufio.NewReaderSize(f, 1<<20)
	var src io.Reader = in
	if magic, _ := in.Peek(len(ageMagic)); string(magic) == ageMagic {
		if len(identities) == 0 {
			return fail(fmt.Errorf("bundle %s is encrypted: pass --identity FILE with the key of one of its recipients", path))
		}
		if src, err = age.Decrypt(in, identities...); err != nil {
			return fail(fmt.Errorf("bundle %s: decrypt: %w", path, err))
		}
	}
	if r.zr, err = zstd.NewReader(src, zstd.WithDecoderConcurrency(1)); err != nil {
		return fail(&DamagedError{Path: path, Err: err})
	}
	r.br = bufio.NewReaderSize(r.zr, 1<<20)
	line, err := r.line()
	if err != nil {
		return fail(err)
	}
	if err := json.Unmarshal(line, &r.Header); err != nil || r.Header.Format == 0 {
		return fail(&DamagedError{Path: path, Err: errors.New("no pgreplica bundle header")})
	}
	if r.Header.Format != FormatVersion {
		return fail(fmt.Errorf("bundle %s has format version %d; this pgreplica reads version %d: use the pgreplica version that wrote it", path, r.Header.Format, FormatVersion))
	}
	return r, nil
}

// Close releases the file.
func (r *Reader) Close() error {
	if r.zr != nil {
		r.zr.Close()
		r.zr = nil
	}
	if r.f != nil {
		err := r.f.Close()
		r.f = nil
		return err
	}
	return nil
}

// line reads one whole line and adds it to the checksum.
func (r *Reader) line() ([]byte, error) {
	line, err := r.br.ReadBytes('\n')
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, &DamagedError{Path: r.Path, Err: err}
	}
	r.sum.Write(line)
	return line, nil
}

// item is the next element of the body: an event, or a table whose rows
// Rows then reads; nil at the (verified) end.
type item struct {
	event *replay.Change
	table *tableRecord
}

// nextItem reads the next element of the body. At the trailer it checks
// the checksum and that nothing follows: a bundle whose every item was read
// without error is complete and unchanged.
func (r *Reader) nextItem() (item, error) {
	if r.done {
		return item{}, nil
	}
	line, err := r.br.ReadBytes('\n')
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return item{}, &DamagedError{Path: r.Path, Err: err}
	}
	var rec record
	if err := json.Unmarshal(line, &rec); err != nil {
		return item{}, &DamagedError{Path: r.Path, Err: fmt.Errorf("bad line: %w", err)}
	}
	if rec.Trailer != nil {
		got := hex.EncodeToString(r.sum.Sum(nil))
		if got != rec.Trailer.SHA256 {
			return item{}, &DamagedError{Path: r.Path, Err: fmt.Errorf("checksum mismatch: content has SHA-256 %s, trailer says %s", got, rec.Trailer.SHA256)}
		}
		var extra [1]byte
		if n, _ := io.ReadFull(r.br, extra[:]); n > 0 {
			return item{}, &DamagedError{Path: r.Path, Err: errors.New("data after the trailer")}
		}
		r.done, r.digest = true, got
		return item{}, nil
	}
	r.sum.Write(line)
	switch {
	case rec.Event != nil:
		e := rec.Event
		if len(e.Op) != 1 {
			return item{}, &DamagedError{Path: r.Path, Err: fmt.Errorf("event %d: bad operation %q", e.ID, e.Op)}
		}
		c := &replay.Change{ID: e.ID, Txid: e.Txid, At: e.At, Table: pg.Table{Schema: e.Schema, Name: e.Table}, Op: e.Op[0]}
		if len(e.Key) > 0 && !bytes.Equal(e.Key, []byte("null")) {
			c.Key = []byte(e.Key)
		}
		if len(e.Data) > 0 && !bytes.Equal(e.Data, []byte("null")) {
			c.Data = []byte(e.Data)
		}
		return item{event: c}, nil
	case rec.Table != nil:
		return item{table: rec.Table}, nil
	}
	return item{}, &DamagedError{Path: r.Path, Err: errors.New("unknown line")}
}

// Verify reads the whole bundle and checks its checksum.
func (r *Reader) Verify() error {
	for {
		it, err := r.nextItem()
		if err != nil {
			return err
		}
		switch {
		case it.table != nil:
			if _, err := io.Copy(io.Discard, r.rows()); err != nil {
				return err
			}
		case it.event == nil:
			return nil
		}
	}
}

// rows reads the COPY rows of the table just read, up to its "\." line.
func (r *Reader) rows() io.Reader { return &rowsReader{r: r, lineStart: true} }

type rowsReader struct {
	r         *Reader
	pending   []byte
	lineStart bool
	done      bool
}

func (s *rowsReader) Read(p []byte) (int, error) {
	if s.done {
		return 0, io.EOF
	}
	if len(s.pending) == 0 {
		chunk, err := s.r.br.ReadSlice('\n')
		switch {
		case err == bufio.ErrBufferFull:
			s.r.sum.Write(chunk)
			s.pending, s.lineStart = chunk, false
		case err != nil:
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, &DamagedError{Path: s.r.Path, Err: err}
		default:
			s.r.sum.Write(chunk)
			if s.lineStart && bytes.Equal(chunk, copyEnd) {
				s.done = true
				return 0, io.EOF
			}
			s.pending, s.lineStart = chunk, true
		}
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

// ReadHeader reads only a bundle's header.
func ReadHeader(path string, identities []age.Identity) (Header, error) {
	r, err := Open(path, identities)
	if err != nil {
		return Header{}, err
	}
	defer r.Close()
	return r.Header, nil
}
