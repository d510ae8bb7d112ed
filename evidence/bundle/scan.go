package bundle

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// maxDepth bounds nesting inside one element; a real element is at most
// four levels deep (collection → collection → record → value).
const maxDepth = 16

// errTooLarge names an element over its bound.
var errTooLarge = errors.New("element over its size bound")

// readElement reads exactly one well-formed CBOR data item of at most max
// bytes from r and returns its encoding. It checks lengths before reading
// or allocating, so a forged length costs nothing, and refuses
// indefinite-length items (the format is definite-length only). io.EOF is
// returned only when r ends before the first byte.
func readElement(r *bufio.Reader, max int) ([]byte, error) {
	s := scanner{r: r, budget: max}
	if _, err := r.Peek(1); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, err
	}
	if err := s.item(0); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return s.out, nil
}

type scanner struct {
	r      *bufio.Reader
	budget int
	out    []byte
}

func (s *scanner) take(n uint64) ([]byte, error) {
	if n > uint64(s.budget) {
		return nil, errTooLarge
	}
	start := len(s.out)
	s.out = append(s.out, make([]byte, n)...)
	if _, err := io.ReadFull(s.r, s.out[start:]); err != nil {
		return nil, err
	}
	s.budget -= int(n)
	return s.out[start:], nil
}

// head reads an item's initial byte and argument.
func (s *scanner) head() (major byte, arg uint64, err error) {
	b, err := s.take(1)
	if err != nil {
		return 0, 0, err
	}
	major, ai := b[0]>>5, b[0]&0x1f
	switch {
	case ai < 24:
		return major, uint64(ai), nil
	case ai <= 27:
		n := 1 << (ai - 24)
		v, err := s.take(uint64(n))
		if err != nil {
			return 0, 0, err
		}
		for _, c := range v {
			arg = arg<<8 | uint64(c)
		}
		return major, arg, nil
	case ai == 31:
		return 0, 0, errors.New("indefinite-length item (the format is definite-length only)")
	}
	return 0, 0, fmt.Errorf("reserved additional information %d", ai)
}

func (s *scanner) item(depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("nested deeper than %d", maxDepth)
	}
	major, arg, err := s.head()
	if err != nil {
		return err
	}
	switch major {
	case 0, 1, 7: // integers, simple values and floats: the head is all
		return nil
	case 2, 3: // byte and text strings
		_, err := s.take(arg)
		return err
	case 4, 5: // arrays and maps: every member is at least one byte
		n := arg
		if major == 5 {
			if n > uint64(s.budget)/2 {
				return errTooLarge
			}
			n *= 2
		}
		if n > uint64(s.budget) {
			return errTooLarge
		}
		for i := uint64(0); i < n; i++ {
			if err := s.item(depth + 1); err != nil {
				return err
			}
		}
		return nil
	case 6: // a tag and its content
		return s.item(depth + 1)
	}
	return fmt.Errorf("major type %d", major)
}
