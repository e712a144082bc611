package replay

import (
	"fmt"
	"slices"
	"strings"

	"github.com/tidwall/gjson"
)

// field is one "column": value of a row image, both as raw JSON text.
type field struct {
	key   string // the column name
	raw   string // the value's JSON text
	isStr bool
}

// image is a parsed row image (or key), in its JSON order.
type image []field

func parseImage(js []byte) image {
	var im image
	gjson.ParseBytes(js).ForEach(func(k, v gjson.Result) bool {
		im = append(im, field{key: k.Str, raw: v.Raw, isStr: v.Type == gjson.String})
		return true
	})
	return im
}

func (im image) get(key string) (field, bool) {
	for _, f := range im {
		if f.key == key {
			return f, true
		}
	}
	return field{}, false
}

// merge sets the fields of later over im.
func (im image) merge(later image) image {
	out := slices.Clone(im)
	for _, f := range later {
		replaced := false
		for i := range out {
			if out[i].key == f.key {
				out[i], replaced = f, true
				break
			}
		}
		if !replaced {
			out = append(out, f)
		}
	}
	return out
}

// json writes the image back as a JSON object.
func (im image) json() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, f := range im {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(jsonString(f.key))
		b.WriteString(": ")
		b.WriteString(f.raw)
	}
	b.WriteByte('}')
	return b.String()
}

func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func (im image) keys() []string {
	ks := make([]string, len(im))
	for i, f := range im {
		ks[i] = f.key
	}
	return ks
}
