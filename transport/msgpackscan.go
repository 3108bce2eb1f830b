package transport

import (
	"encoding/binary"
	"fmt"
)

// scanMsgpack checks that data is exactly one well-formed msgpack object,
// before any of it is handed to a decoder. It verifies that
//   - every header is complete and every str, bin and ext body fits in the
//     bytes that remain;
//   - every array or map declares no more elements than could still follow:
//     each element takes at least one byte, so the elements of all arrays
//     and maps still open (a map of n entries holds 2n elements) must not
//     outnumber the remaining bytes;
//   - arrays and maps nest at most maxDepth deep (a top-level array or map
//     is at depth 1; maxDepth < 0 counts as 0);
//   - the reserved byte 0xc1 does not occur as a type byte;
//   - timestamps (ext type -1) have a 4, 8 or 12 byte body and at most
//     999999999 nanoseconds;
//   - the top-level object ends exactly at the end of data.
//
// A decoder run on data that passes can thus not be made to allocate more
// than a constant times len(data). The scan is iterative, allocates nothing
// for nesting up to 64 levels, and does not panic on any input. Errors wrap
// [ErrMalformed] and give the byte offset of the offending type byte.
func scanMsgpack(data []byte, maxDepth int) error {
	if len(data) == 0 {
		return msgpackScanError(0, "empty payload")
	}
	if maxDepth < 0 {
		maxDepth = 0
	}
	n := uint64(len(data))

	// stack[i] is the number of elements still to be read in the i-th open
	// container; stack[0] stands for the single top-level object. pending
	// is the sum of the stack.
	var stackBuf [DefaultMaxDepth + 1]uint64
	stack := append(stackBuf[:0], 1)
	pending := uint64(1)
	var off uint64

	for len(stack) > 0 {
		if off >= n {
			return msgpackScanError(off, "unexpected end of data: %d more object(s) expected", pending)
		}
		stack[len(stack)-1]--
		pending--

		start := off
		b := data[off]
		off++

		var (
			body     uint64 // bytes after the type byte and length field
			lenBytes uint64 // size of the big-endian length field, if any
			elems    uint64 // elements of an array or map
			isCont   bool
			kind     string
			extType  = -1 // index of the ext type byte relative to start, or -1
		)

		switch {
		case b <= 0x7f, b >= 0xe0: // positive and negative fixint
		case b <= 0x8f: // fixmap
			isCont, kind, elems = true, "fixmap", 2*uint64(b&0x0f)
		case b <= 0x9f: // fixarray
			isCont, kind, elems = true, "fixarray", uint64(b&0x0f)
		case b <= 0xbf: // fixstr
			kind, body = "fixstr", uint64(b&0x1f)
		default:
			switch b {
			case 0xc0, 0xc2, 0xc3: // nil, false, true
			case 0xc1:
				return msgpackScanError(start, "reserved type byte 0xc1")
			case 0xc4:
				kind, lenBytes = "bin8", 1
			case 0xc5:
				kind, lenBytes = "bin16", 2
			case 0xc6:
				kind, lenBytes = "bin32", 4
			case 0xc7:
				kind, lenBytes, extType = "ext8", 1, 2
			case 0xc8:
				kind, lenBytes, extType = "ext16", 2, 3
			case 0xc9:
				kind, lenBytes, extType = "ext32", 4, 5
			case 0xca:
				kind, body = "float32", 4
			case 0xcb:
				kind, body = "float64", 8
			case 0xcc:
				kind, body = "uint8", 1
			case 0xcd:
				kind, body = "uint16", 2
			case 0xce:
				kind, body = "uint32", 4
			case 0xcf:
				kind, body = "uint64", 8
			case 0xd0:
				kind, body = "int8", 1
			case 0xd1:
				kind, body = "int16", 2
			case 0xd2:
				kind, body = "int32", 4
			case 0xd3:
				kind, body = "int64", 8
			case 0xd4:
				kind, body, extType = "fixext1", 2, 1
			case 0xd5:
				kind, body, extType = "fixext2", 3, 1
			case 0xd6:
				kind, body, extType = "fixext4", 5, 1
			case 0xd7:
				kind, body, extType = "fixext8", 9, 1
			case 0xd8:
				kind, body, extType = "fixext16", 17, 1
			case 0xd9:
				kind, lenBytes = "str8", 1
			case 0xda:
				kind, lenBytes = "str16", 2
			case 0xdb:
				kind, lenBytes = "str32", 4
			case 0xdc:
				kind, lenBytes, isCont = "array16", 2, true
			case 0xdd:
				kind, lenBytes, isCont = "array32", 4, true
			case 0xde:
				kind, lenBytes, isCont = "map16", 2, true
			case 0xdf:
				kind, lenBytes, isCont = "map32", 4, true
			}
		}

		if lenBytes > 0 {
			if n-off < lenBytes {
				return msgpackScanError(start, "truncated %s header: needs %d length bytes, %d remain", kind, lenBytes, n-off)
			}
			var l uint64
			switch lenBytes {
			case 1:
				l = uint64(data[off])
			case 2:
				l = uint64(binary.BigEndian.Uint16(data[off:]))
			default:
				l = uint64(binary.BigEndian.Uint32(data[off:]))
			}
			off += lenBytes
			switch {
			case !isCont:
				body = l
				if extType >= 0 {
					body++ // the ext type byte precedes the data
				}
			case kind == "map16" || kind == "map32":
				elems = 2 * l
			default:
				elems = l
			}
		}

		if isCont {
			depth := len(stack) // depth of this container
			if depth > maxDepth {
				return msgpackScanError(start, "%s nested %d deep, the limit is %d", kind, depth, maxDepth)
			}
			if elems > n-off || pending > n-off-elems {
				what := fmt.Sprintf("%d elements", elems)
				if kind == "map16" || kind == "map32" || kind == "fixmap" {
					what = fmt.Sprintf("%d entries (%d keys and values)", elems/2, elems)
				}
				return msgpackScanError(start, "%s declares %s but only %d bytes remain, with %d other object(s) still pending; each takes at least one byte",
					kind, what, n-off, pending)
			}
			if elems > 0 {
				stack = append(stack, elems)
				pending += elems
			}
		} else if body > 0 {
			if body > n-off {
				return msgpackScanError(start, "truncated %s: needs %d bytes after the header, %d remain", kind, body, n-off)
			}
			if extType >= 0 && int8(data[start+uint64(extType)]) == -1 {
				if err := checkMsgpackTimestamp(data[off+1:off+body], start); err != nil {
					return err
				}
			}
			off += body
		}

		for len(stack) > 0 && stack[len(stack)-1] == 0 {
			stack = stack[:len(stack)-1]
		}
	}

	if off != n {
		return msgpackScanError(off, "%d trailing byte(s) after the top-level object", n-off)
	}
	return nil
}

// checkMsgpackTimestamp validates the body of a timestamp extension (type -1)
// whose type byte is at offset start.
func checkMsgpackTimestamp(body []byte, start uint64) error {
	switch len(body) {
	case 4:
		return nil
	case 8:
		if nsec := binary.BigEndian.Uint64(body) >> 34; nsec > 999999999 {
			return msgpackScanError(start, "timestamp64 has %d nanoseconds, more than 999999999", nsec)
		}
		return nil
	case 12:
		if nsec := binary.BigEndian.Uint32(body); nsec > 999999999 {
			return msgpackScanError(start, "timestamp96 has %d nanoseconds, more than 999999999", nsec)
		}
		return nil
	}
	return msgpackScanError(start, "timestamp extension has a %d byte body; only 4, 8 and 12 are valid", len(body))
}

func msgpackScanError(off uint64, format string, args ...any) error {
	return fmt.Errorf("%w: msgpack: byte offset %d: %s", ErrMalformed, off, fmt.Sprintf(format, args...))
}
