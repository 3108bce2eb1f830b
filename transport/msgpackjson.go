package transport

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"strconv"
	"time"
)

// MsgpackJSON returns the JSON form of one msgpack value, for showing a
// payload whose content type is msgpack to a person: nil, booleans,
// numbers, strings, arrays and maps as JSON has them (a map key that is
// not a string is written as its JSON text, 1 as "1"); a timestamp as its
// RFC 3339 string in UTC; bin as {"$bin": base64}; any other ext as
// {"$ext": type, "$bin": base64}; a float that JSON cannot hold (NaN,
// ±Inf) as its name in a string. Strings that are not UTF-8 have their
// bad bytes replaced by U+FFFD. Map entries keep their order.
//
// data is first checked as [Msgpack] checks what it decodes (structure,
// lengths, at most [DefaultMaxDepth] levels, one value filling data, at
// most [DefaultMaxPayload] bytes), so the work and the output are bounded
// by a small multiple of len(data). Errors wrap [ErrPayloadTooLarge] or
// [ErrMalformed].
func MsgpackJSON(data []byte) ([]byte, error) {
	if err := checkPayloadSize(len(data), DefaultMaxPayload); err != nil {
		return nil, err
	}
	if err := scanMsgpack(data, DefaultMaxDepth); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	out.Grow(2 * len(data))
	mpToJSON(&out, data)
	return out.Bytes(), nil
}

// mpToJSON writes the JSON form of the msgpack value at the start of b,
// which scanMsgpack has checked, and returns the bytes after it.
func mpToJSON(out *bytes.Buffer, b []byte) []byte {
	c := b[0]
	b = b[1:]
	be := func(n int) uint64 { // a big-endian unsigned of n bytes
		var v uint64
		for _, x := range b[:n] {
			v = v<<8 | uint64(x)
		}
		return v
	}
	switch {
	case c <= 0x7f:
		out.WriteString(strconv.Itoa(int(c)))
		return b
	case c >= 0xe0:
		out.WriteString(strconv.Itoa(int(int8(c))))
		return b
	case c <= 0x8f:
		return mpMap(out, b, int(c&0x0f))
	case c <= 0x9f:
		return mpArray(out, b, int(c&0x0f))
	case c <= 0xbf:
		return mpString(out, b, int(c&0x1f))
	}
	switch c {
	case 0xc0:
		out.WriteString("null")
		return b
	case 0xc2:
		out.WriteString("false")
		return b
	case 0xc3:
		out.WriteString("true")
		return b
	case 0xc4, 0xc5, 0xc6: // bin 8, 16, 32
		n := 1 << (c - 0xc4)
		size := int(be(n))
		b = b[n:]
		mpBin(out, -1, b[:size], false)
		return b[size:]
	case 0xc7, 0xc8, 0xc9: // ext 8, 16, 32
		n := 1 << (c - 0xc7)
		size := int(be(n))
		typ := int8(b[n])
		b = b[n+1:]
		mpExt(out, typ, b[:size])
		return b[size:]
	case 0xca:
		mpFloat(out, float64(math.Float32frombits(uint32(be(4)))), 32)
		return b[4:]
	case 0xcb:
		mpFloat(out, math.Float64frombits(be(8)), 64)
		return b[8:]
	case 0xcc, 0xcd, 0xce, 0xcf: // uint 8 to 64
		n := 1 << (c - 0xcc)
		out.WriteString(strconv.FormatUint(be(n), 10))
		return b[n:]
	case 0xd0, 0xd1, 0xd2, 0xd3: // int 8 to 64
		n := 1 << (c - 0xd0)
		v := int64(be(n)<<(64-8*n)) >> (64 - 8*n) // sign-extended
		out.WriteString(strconv.FormatInt(v, 10))
		return b[n:]
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1 to 16
		n := 1 << (c - 0xd4)
		typ := int8(b[0])
		mpExt(out, typ, b[1:1+n])
		return b[1+n:]
	case 0xd9, 0xda, 0xdb: // str 8, 16, 32
		n := 1 << (c - 0xd9)
		size := int(be(n))
		return mpString(out, b[n:], size)
	case 0xdc, 0xdd: // array 16, 32
		n := 2 << (c - 0xdc)
		return mpArray(out, b[n:], int(be(n)))
	case 0xde, 0xdf: // map 16, 32
		n := 2 << (c - 0xde)
		return mpMap(out, b[n:], int(be(n)))
	}
	panic("transport: msgpack byte 0xc1 after a scan") // scanMsgpack refuses it
}

func mpString(out *bytes.Buffer, b []byte, n int) []byte {
	s, _ := json.Marshal(string(b[:n])) // a string always marshals
	out.Write(s)
	return b[n:]
}

func mpArray(out *bytes.Buffer, b []byte, n int) []byte {
	out.WriteByte('[')
	for i := range n {
		if i > 0 {
			out.WriteByte(',')
		}
		b = mpToJSON(out, b)
	}
	out.WriteByte(']')
	return b
}

func mpMap(out *bytes.Buffer, b []byte, n int) []byte {
	out.WriteByte('{')
	for i := range n {
		if i > 0 {
			out.WriteByte(',')
		}
		if c := b[0]; c >= 0xa0 && c <= 0xbf || c >= 0xd9 && c <= 0xdb {
			b = mpToJSON(out, b) // a string key
		} else {
			var key bytes.Buffer
			b = mpToJSON(&key, b)
			s, _ := json.Marshal(key.String())
			out.Write(s)
		}
		out.WriteByte(':')
		b = mpToJSON(out, b)
	}
	out.WriteByte('}')
	return b
}

func mpFloat(out *bytes.Buffer, f float64, bits int) {
	switch {
	case math.IsNaN(f):
		out.WriteString(`"NaN"`)
	case math.IsInf(f, 1):
		out.WriteString(`"+Inf"`)
	case math.IsInf(f, -1):
		out.WriteString(`"-Inf"`)
	default:
		out.WriteString(strconv.FormatFloat(f, 'g', -1, bits))
	}
}

// mpExt writes an ext value: a timestamp (type -1, whose body the scan
// checked) as a time, any other as its type and bytes.
func mpExt(out *bytes.Buffer, typ int8, body []byte) {
	if typ == -1 {
		var t time.Time
		switch len(body) {
		case 4:
			t = time.Unix(int64(binary.BigEndian.Uint32(body)), 0)
		case 8:
			v := binary.BigEndian.Uint64(body)
			t = time.Unix(int64(v&(1<<34-1)), int64(v>>34))
		case 12:
			t = time.Unix(int64(binary.BigEndian.Uint64(body[4:])), int64(binary.BigEndian.Uint32(body)))
		}
		s, _ := json.Marshal(t.UTC().Format(time.RFC3339Nano))
		out.Write(s)
		return
	}
	mpBin(out, typ, body, true)
}

func mpBin(out *bytes.Buffer, typ int8, body []byte, ext bool) {
	out.WriteByte('{')
	if ext {
		out.WriteString(`"$ext":`)
		out.WriteString(strconv.Itoa(int(typ)))
		out.WriteByte(',')
	}
	out.WriteString(`"$bin":"`)
	enc := base64.NewEncoder(base64.StdEncoding, out)
	_, _ = enc.Write(body)
	_ = enc.Close()
	out.WriteString(`"}`)
}
