package criuimg

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// The protobuf wire format, decoded by hand: importing generated types (or the
// protobuf runtime) would run their registry inits on every tardis start,
// runc state and exec included. check accepts exactly the entries that
// proto.Unmarshal of go-criu's types accepts (see the differential tests).

type wireType uint8

const (
	wireVarint     wireType = 0
	wireFixed64    wireType = 1
	wireBytes      wireType = 2
	wireStartGroup wireType = 3
	wireEndGroup   wireType = 4
	wireFixed32    wireType = 5
)

const (
	// maxFieldNumber is the largest field number of a message field; inside
	// an unknown group, protobuf's own skipper allows up to math.MaxInt32.
	maxFieldNumber = 1<<29 - 1
	// maxGroupDepth is how deeply unknown groups may nest, as in protobuf's
	// DefaultRecursionLimit.
	maxGroupDepth = 10000
)

var (
	errTruncated = errors.New("truncated")
	errOverflow  = errors.New("varint overflows 64 bits")
)

// varint decodes a base-128 varint: at most 10 bytes, the 10th at most 1.
func varint(b []byte) (uint64, int, error) {
	var v uint64
	for i := 0; i < len(b); i++ {
		c := b[i]
		if i == 9 && c > 1 {
			return 0, 0, errOverflow
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1, nil
		}
	}
	return 0, 0, errTruncated
}

// tag decodes a field key; field numbers run from 1 to max.
func tag(b []byte, max uint64) (uint32, wireType, int, error) {
	v, n, err := varint(b)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("field key: %w", err)
	}
	if num := v >> 3; num == 0 || num > max {
		return 0, 0, 0, fmt.Errorf("field number %d out of range", num)
	}
	return uint32(v >> 3), wireType(v & 7), n, nil
}

// lengthPrefixed returns the payload of a length-delimited value and the
// bytes it takes with its length.
func lengthPrefixed(b []byte) ([]byte, int, error) {
	l, n, err := varint(b)
	if err != nil {
		return nil, 0, fmt.Errorf("length: %w", err)
	}
	if l > uint64(len(b)-n) {
		return nil, 0, fmt.Errorf("length %d past the end (%d bytes left)", l, len(b)-n)
	}
	return b[n : n+int(l)], n + int(l), nil
}

// skip returns the size of the value of field num, of wire type typ, at the
// start of b. Groups (which CRIU never writes) are skipped as protobuf does.
func skip(num uint32, typ wireType, b []byte, depth int) (int, error) {
	switch typ {
	case wireVarint:
		_, n, err := varint(b)
		return n, err
	case wireFixed64:
		if len(b) < 8 {
			return 0, errTruncated
		}
		return 8, nil
	case wireFixed32:
		if len(b) < 4 {
			return 0, errTruncated
		}
		return 4, nil
	case wireBytes:
		_, n, err := lengthPrefixed(b)
		return n, err
	case wireStartGroup:
		if depth > maxGroupDepth {
			return 0, errors.New("groups nested too deeply")
		}
		size := len(b)
		for {
			num2, typ2, n, err := tag(b, math.MaxInt32)
			if err != nil {
				return 0, err
			}
			b = b[n:]
			if typ2 == wireEndGroup {
				if num2 != num {
					return 0, fmt.Errorf("group %d ended as %d", num, num2)
				}
				return size - len(b), nil
			}
			if n, err = skip(num2, typ2, b, depth+1); err != nil {
				return 0, err // not wrapped: groups may nest 10000 deep
			}
			b = b[n:]
		}
	case wireEndGroup:
		return 0, errors.New("end of a group that was not started")
	}
	return 0, fmt.Errorf("invalid wire type %d", typ)
}

// packed checks the payload of a packed repeated scalar field.
func packed(k kind, b []byte) error {
	switch k {
	case kFixed32:
		if len(b)%4 != 0 {
			return errors.New("packed fixed32 values: length not a multiple of 4")
		}
	case kFixed64:
		if len(b)%8 != 0 {
			return errors.New("packed fixed64 values: length not a multiple of 8")
		}
	default:
		for len(b) > 0 {
			_, n, err := varint(b)
			if err != nil {
				return fmt.Errorf("packed varints: %w", err)
			}
			b = b[n:]
		}
	}
	return nil
}

// maxSingular bounds the singular message fields of a schema message (the
// schema test checks it), whose occurrences check keeps on the stack.
const maxSingular = 12

// check checks an entry against message m as proto.Unmarshal does: the wire
// format, nested messages, packed values, and (if required) that every
// required field is set, in nested messages too. A field with a wire type
// other than its own is an unknown field, as in protobuf. A singular message
// field that occurs more than once is the merge of its occurrences, so its
// required fields may come from any of them.
func check(m *message, b []byte, required bool) error {
	all := b
	var seen, multi uint64 // by field number: set with its own wire type; a singular message seen twice
	var singular [maxSingular]struct {
		num uint32
		b   []byte
	}
	nsingular := 0
	for len(b) > 0 {
		num, typ, n, err := tag(b, maxFieldNumber)
		if err != nil {
			return err
		}
		b = b[n:]
		var f *field
		if int(num) < len(m.fields) && m.fields[num].kind != 0 {
			f = &m.fields[num]
		}
		switch {
		case f == nil:
			n, err = skip(num, typ, b, 0)
		case typ == f.kind.wire() && f.kind == kMessage:
			var v []byte
			if v, n, err = lengthPrefixed(b); err != nil {
				break
			}
			if f.card == repeated {
				if err = check(f.msg, v, required); err != nil {
					err = fmt.Errorf("%s: %w", f.name, err)
				}
				break
			}
			if seen&(1<<num) != 0 {
				multi |= 1 << num
				break
			}
			if nsingular == maxSingular {
				return fmt.Errorf("%s has more than %d message fields", m.name, maxSingular)
			}
			singular[nsingular].num, singular[nsingular].b = num, v
			nsingular++
		case typ == f.kind.wire():
			n, err = skip(num, typ, b, 0)
		case typ == wireBytes && f.card == repeated && f.kind != kBytes && f.kind != kMessage:
			var v []byte
			if v, n, err = lengthPrefixed(b); err == nil {
				err = packed(f.kind, v)
			}
		default:
			n, err = skip(num, typ, b, 0)
		}
		if err != nil {
			return fmt.Errorf("field %d: %w", num, err)
		}
		if f != nil && typ == f.kind.wire() {
			seen |= 1 << num
		}
		b = b[n:]
	}
	for _, s := range singular[:nsingular] {
		f := &m.fields[s.num]
		var err error
		if multi&(1<<s.num) == 0 {
			err = check(f.msg, s.b, required)
		} else {
			err = checkMerged(f.msg, occurrences(all, s.num), required)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	if missing := m.required &^ seen; required && missing != 0 {
		return fmt.Errorf("required field %s.%s missing", m.name, m.fields[bits.TrailingZeros64(missing)].name)
	}
	return nil
}

// checkMerged checks the occurrences of a singular message field: each must
// be well-formed on its own, and their merge (their concatenation, in
// protobuf) must have its required fields.
func checkMerged(m *message, occs [][]byte, required bool) error {
	for _, o := range occs {
		if err := check(m, o, false); err != nil {
			return err
		}
	}
	if !required {
		return nil
	}
	return check(m, bytes.Join(occs, nil), true)
}

// Readers of fields of entries that check accepted. Like protobuf, they only
// see a field with its own wire type, and the last value of a scalar wins.

// occurrences returns the payloads of length-delimited field num, in order:
// the parts of a singular message field, which merge, or the elements of a
// repeated one.
func occurrences(b []byte, num uint32) [][]byte {
	var occs [][]byte
	fields(b, func(n uint32, typ wireType, _ uint64, v []byte) {
		if n == num && typ == wireBytes {
			occs = append(occs, v)
		}
	})
	return occs
}

// uintField returns the last varint value of field num in the parts of a
// message, and whether there is one.
func uintField(num uint32, parts ...[]byte) (uint64, bool) {
	var val uint64
	var ok bool
	for _, p := range parts {
		fields(p, func(n uint32, typ wireType, v uint64, _ []byte) {
			if n == num && typ == wireVarint {
				val, ok = v, true
			}
		})
	}
	return val, ok
}

// uint32s returns the values of repeated varint field num, packed or not.
func uint32s(b []byte, num uint32) []uint32 {
	var vals []uint32
	fields(b, func(n uint32, typ wireType, v uint64, p []byte) {
		switch {
		case n != num:
		case typ == wireVarint:
			vals = append(vals, uint32(v))
		case typ == wireBytes:
			for len(p) > 0 {
				v, k, err := varint(p)
				if err != nil {
					return
				}
				vals = append(vals, uint32(v))
				p = p[k:]
			}
		}
	})
	return vals
}

// fields calls fn for each field of b with its varint value or its payload.
// It stops at the first malformed field, which check has ruled out.
func fields(b []byte, fn func(num uint32, typ wireType, v uint64, payload []byte)) {
	for len(b) > 0 {
		num, typ, n, err := tag(b, maxFieldNumber)
		if err != nil {
			return
		}
		b = b[n:]
		var v uint64
		var p []byte
		switch typ {
		case wireVarint:
			v, n, err = varint(b)
		case wireBytes:
			p, n, err = lengthPrefixed(b)
		default:
			n, err = skip(num, typ, b, 0)
		}
		if err != nil {
			return
		}
		fn(num, typ, v, p)
		b = b[n:]
	}
}
