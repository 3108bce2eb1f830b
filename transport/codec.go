package transport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"reflect"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
)

// Content types of the payload codecs, as carried in a message header.
const (
	// ContentTypeJSON is the content type of [JSON]. A message without a
	// content type is also decoded as JSON.
	ContentTypeJSON = "application/json"
	// ContentTypeMsgpack is the content type of [Msgpack].
	ContentTypeMsgpack = "application/msgpack"
)

const (
	// DefaultMaxPayload is the largest payload, in bytes, that [JSON] and
	// [Msgpack] decode or produce: 1 MiB, the default max_payload of a NATS
	// server. Use [NewJSONCodec] or [NewMsgpackCodec] for another limit.
	DefaultMaxPayload = 1 << 20

	// DefaultMaxDepth is the deepest nesting of msgpack arrays and maps that
	// [Msgpack] accepts. A top-level array or map is at depth 1.
	DefaultMaxDepth = 64
)

var (
	// ErrUnknownContentType is wrapped by [CodecFor] when no codec handles
	// the content type; the error names the content type.
	ErrUnknownContentType = errors.New("transport: unknown content type")

	// ErrPayloadTooLarge is wrapped by [Codec.Unmarshal] when the payload is
	// longer than the codec's limit, and by [Codec.Marshal] when the encoding
	// would be. The error states the size and the limit.
	ErrPayloadTooLarge = errors.New("transport: payload too large")

	// ErrDecodeTarget is wrapped by [Codec.Unmarshal] when the target is not
	// a non-nil pointer to a concrete type: nil, a non-pointer, a nil
	// pointer, or a pointer (to pointers) to an interface such as *any.
	//
	// Decoding into an interface lets the payload, not the receiver, choose
	// the shape and size of what gets allocated: a generic msgpack decoder
	// handed the 5-byte header of an array of 2^32-1 elements will try to
	// reserve gigabytes. The receiver must name the type it expects.
	ErrDecodeTarget = errors.New("transport: decode into a concrete type")

	// ErrMalformed is wrapped by [Codec.Unmarshal] for every payload that
	// does not decode into the target: syntax errors, type mismatches,
	// trailing data after the value, and, for msgpack, structural errors
	// found by the pre-decode scan (declared lengths beyond the data,
	// nesting too deep, reserved bytes). The underlying error's text is
	// kept, and it can be reached with errors.As.
	ErrMalformed = errors.New("transport: malformed payload")
)

// Codec encodes and decodes event payloads.
//
// Unmarshal is meant for payloads from untrusted publishers and bounds the
// work an input can cause:
//   - data longer than the codec's limit ([DefaultMaxPayload] unless set
//     otherwise) is rejected with [ErrPayloadTooLarge] before any decoding;
//   - v must be a non-nil pointer to a concrete type, otherwise the error
//     wraps [ErrDecodeTarget] (which explains why interfaces are refused);
//   - data must hold exactly one value; anything that does not decode into
//     v, including trailing bytes, gives an error wrapping [ErrMalformed].
//
// On error v may have been partly written. Marshal fails with
// [ErrPayloadTooLarge] when the encoding is longer than the limit, since no
// receiver using the same limit would accept it.
//
// The codecs of this package are stateless and safe for concurrent use.
type Codec interface {
	// ContentType is the media type identifying the encoding, for the
	// message header.
	ContentType() string
	// Marshal encodes v.
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data into v, a non-nil pointer to a concrete type.
	Unmarshal(data []byte, v any) error
}

// JSON is the [Codec] for "application/json", using encoding/json with a
// payload limit of [DefaultMaxPayload]; nesting depth is bounded by
// encoding/json itself. Unmarshal accepts whitespace around the value but
// nothing else after it. Errors wrap [ErrPayloadTooLarge],
// [ErrDecodeTarget] or [ErrMalformed] as described for [Codec]. JSON is
// stateless and safe for concurrent use.
var JSON Codec = jsonCodec{maxBytes: DefaultMaxPayload}

// Msgpack is the [Codec] for "application/msgpack" with a payload limit of
// [DefaultMaxPayload] and a nesting limit of [DefaultMaxDepth].
//
// Struct fields are named by their `msgpack` tag, or failing that by their
// `json` tag (name, "-" and omitempty are honoured), so that one struct type
// works with both codecs. Maps of type map[string]string, map[string]bool
// and map[string]any are encoded with sorted keys.
//
// Before decoding, Unmarshal checks the whole msgpack structure: every
// declared length must fit in the bytes that remain, nesting must stay
// within the depth limit, the reserved byte 0xc1 is refused, and exactly one
// top-level value must fill the data. This bounds every allocation the
// decoder makes by a constant factor (the size of the target's element
// types) times len(data); the decoder alone would reserve memory for
// whatever count a header declares. Errors wrap [ErrPayloadTooLarge],
// [ErrDecodeTarget] or [ErrMalformed] as described for [Codec], and
// scan errors give the byte offset of the fault. Msgpack is stateless and
// safe for concurrent use.
var Msgpack Codec = msgpackCodec{maxBytes: DefaultMaxPayload, maxDepth: DefaultMaxDepth}

// NewJSONCodec returns a JSON [Codec] that rejects payloads longer than
// maxBytes; maxBytes <= 0 selects [DefaultMaxPayload]. It is otherwise
// the same as [JSON], and safe for concurrent use.
func NewJSONCodec(maxBytes int) Codec {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxPayload
	}
	return jsonCodec{maxBytes: maxBytes}
}

// NewMsgpackCodec returns a msgpack [Codec] that rejects payloads longer
// than maxBytes and arrays or maps nested deeper than maxDepth. Values <= 0
// select [DefaultMaxPayload] and [DefaultMaxDepth]. It is otherwise the same
// as [Msgpack], and safe for concurrent use.
func NewMsgpackCodec(maxBytes int, maxDepth int) Codec {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxPayload
	}
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	return msgpackCodec{maxBytes: maxBytes, maxDepth: maxDepth}
}

// CodecFor returns the codec for a message's content type: [JSON] for
// "application/json" and for an empty content type (messages published by
// plain tools carry none), [Msgpack] for "application/msgpack". Matching
// ignores case and media type parameters such as "; charset=utf-8". Any
// other content type gives an error wrapping [ErrUnknownContentType] that
// names it.
func CodecFor(contentType string) (Codec, error) {
	ct := strings.TrimSpace(contentType)
	if ct == "" {
		return JSON, nil
	}
	mediaType, _, err := mime.ParseMediaType(ct)
	if err == nil {
		switch mediaType {
		case ContentTypeJSON:
			return JSON, nil
		case ContentTypeMsgpack:
			return Msgpack, nil
		}
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownContentType, contentType)
}

// checkPayloadSize enforces the codec's payload limit.
func checkPayloadSize(n, limit int) error {
	if n > limit {
		return fmt.Errorf("%w: %d bytes, the limit is %d bytes", ErrPayloadTooLarge, n, limit)
	}
	return nil
}

// checkDecodeTarget accepts only non-nil pointers whose pointee, after
// following any further pointer types, is not an interface type.
func checkDecodeTarget(v any) error {
	if v == nil {
		return fmt.Errorf("%w: target is nil", ErrDecodeTarget)
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer {
		return fmt.Errorf("%w: target is a %s, not a pointer", ErrDecodeTarget, rv.Type())
	}
	if rv.IsNil() {
		return fmt.Errorf("%w: target is a nil %s", ErrDecodeTarget, rv.Type())
	}
	t := rv.Type().Elem()
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Interface {
		return fmt.Errorf("%w: target %s points to an interface; decoding untrusted data into an interface lets the payload choose what is allocated",
			ErrDecodeTarget, rv.Type())
	}
	return nil
}

type jsonCodec struct {
	maxBytes int
}

func (jsonCodec) ContentType() string { return ContentTypeJSON }

func (c jsonCodec) Marshal(v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("transport: json marshal: %w", err)
	}
	if err := checkPayloadSize(len(data), c.maxBytes); err != nil {
		return nil, err
	}
	return data, nil
}

func (c jsonCodec) Unmarshal(data []byte, v any) error {
	if err := checkPayloadSize(len(data), c.maxBytes); err != nil {
		return err
	}
	if err := checkDecodeTarget(v); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: json: empty payload", ErrMalformed)
		}
		return fmt.Errorf("%w: json: %w", ErrMalformed, err)
	}
	off := dec.InputOffset()
	for i := off; i < int64(len(data)); i++ {
		switch data[i] {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return fmt.Errorf("%w: json: trailing data at byte offset %d after the value", ErrMalformed, i)
	}
	return nil
}

type msgpackCodec struct {
	maxBytes int
	maxDepth int
}

func (msgpackCodec) ContentType() string { return ContentTypeMsgpack }

func (c msgpackCodec) Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.GetEncoder()
	enc.Reset(&buf)
	enc.SetCustomStructTag("json")
	enc.SetSortMapKeys(true)
	err := enc.Encode(v)
	msgpack.PutEncoder(enc)
	if err != nil {
		return nil, fmt.Errorf("transport: msgpack marshal: %w", err)
	}
	if err := checkPayloadSize(buf.Len(), c.maxBytes); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (c msgpackCodec) Unmarshal(data []byte, v any) error {
	if err := checkPayloadSize(len(data), c.maxBytes); err != nil {
		return err
	}
	if err := checkDecodeTarget(v); err != nil {
		return err
	}
	if err := scanMsgpack(data, c.maxDepth); err != nil {
		return err
	}
	dec := msgpack.GetDecoder()
	dec.Reset(bytes.NewReader(data))
	dec.SetCustomStructTag("json")
	err := dec.Decode(v)
	msgpack.PutDecoder(dec)
	if err != nil {
		return fmt.Errorf("%w: msgpack: %w", ErrMalformed, err)
	}
	return nil
}
