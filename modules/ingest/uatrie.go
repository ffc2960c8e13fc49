package ingest

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"unsafe"

	"github.com/medama-io/go-useragent"
)

// The go-useragent parser is a trie of 83,000 nodes held in 262,000 small heap
// objects: 87% of hop's live heap objects. The garbage collector traced all of them on
// every cycle. The trie never changes once built, so packTrie copies it into one block
// allocated as []uint64: the collector marks it as a single object and never scans
// it, and the library's own Get walks the copy exactly as it walked the original.
// Under redirect load that cut hop's CPU per redirect to 0.91–0.94× (five runs, both
// builds loaded at the same time).

// sharedUAParser is the library's process-wide parser (useragent.NewParser always
// returns the same one) with its trie swapped for the packed copy, so that nothing
// holds the original any more. It is done once per process, before any parse.
var sharedUAParser = sync.OnceValue(func() *useragent.Parser {
	p := useragent.NewParser()
	if packed, err := packTrie(p.Trie); err == nil {
		p.Trie = packed
	}
	// On error (a library upgrade changed the node layout; TestPackTrie fails first)
	// the parser keeps its original trie: correct, only slower.
	return p
})

// trieLayout is where the fields of useragent.RuneTrie and its child entries live,
// read with reflection so a changed layout is refused instead of misread.
type trieLayout struct {
	nodeSize                uintptr
	childrenOff, resultOff  uintptr // the two slice fields of a node
	childSize               uintptr // one child entry: {node *RuneTrie, r rune}
	childNodeOff, childROff uintptr
	resultSize              uintptr // one result entry: pointer-free
}

var errTrieLayout = errors.New("useragent.RuneTrie layout is not the one packTrie knows")

func runeTrieLayout() (trieLayout, error) {
	node := reflect.TypeFor[useragent.RuneTrie]()
	nodePtr := reflect.PointerTo(node)
	l := trieLayout{nodeSize: node.Size()}
	var haveChildren, haveResult bool
	if node.NumField() != 2 {
		return l, errTrieLayout
	}
	for i := range node.NumField() {
		f := node.Field(i)
		if f.Type.Kind() != reflect.Slice || f.Type.Elem().Kind() != reflect.Struct {
			return l, errTrieLayout
		}
		elem := f.Type.Elem()
		switch {
		case isChildEntry(elem, nodePtr) && !haveChildren:
			haveChildren = true
			l.childrenOff, l.childSize = f.Offset, elem.Size()
			for j := range elem.NumField() {
				if ef := elem.Field(j); ef.Type == nodePtr {
					l.childNodeOff = ef.Offset
				} else {
					l.childROff = ef.Offset
				}
			}
		case pointerFree(elem) && !haveResult:
			haveResult = true
			l.resultOff, l.resultSize = f.Offset, elem.Size()
		default:
			return l, errTrieLayout
		}
	}
	if !haveChildren || !haveResult {
		return l, errTrieLayout
	}
	return l, nil
}

// isChildEntry reports whether t is struct{ node *RuneTrie; r rune } in either order.
func isChildEntry(t, nodePtr reflect.Type) bool {
	if t.NumField() != 2 {
		return false
	}
	a, b := t.Field(0).Type, t.Field(1).Type
	return (a == nodePtr && b.Kind() == reflect.Int32) || (b == nodePtr && a.Kind() == reflect.Int32)
}

// pointerFree reports whether values of t hold no pointers at all.
func pointerFree(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	case reflect.Array:
		return pointerFree(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if !pointerFree(t.Field(i).Type) {
				return false
			}
		}
		return true
	}
	return false
}

// sliceHeader is the runtime layout of a slice.
type sliceHeader struct {
	data     unsafe.Pointer
	len, cap int
}

// children and results are a node's two slices.
func (l trieLayout) children(node unsafe.Pointer) *sliceHeader {
	return (*sliceHeader)(unsafe.Add(node, l.childrenOff))
}

func (l trieLayout) results(node unsafe.Pointer) *sliceHeader {
	return (*sliceHeader)(unsafe.Add(node, l.resultOff))
}

// child is entry j of the children array at data: where its node pointer and its
// rune are.
func (l trieLayout) child(data unsafe.Pointer, j int) (node *unsafe.Pointer, r *int32) {
	e := unsafe.Add(data, uintptr(j)*l.childSize)
	return (*unsafe.Pointer)(unsafe.Add(e, l.childNodeOff)), (*int32)(unsafe.Add(e, l.childROff))
}

// packTrie copies the trie rooted at root into one block of memory allocated as
// []uint64, which the garbage collector never scans. That is sound because every
// pointer inside the block points into the block itself, and the block stays alive
// (and in place: Go's collector does not move objects) as long as anything points
// into it: the parser's Trie field points at its first node. The original trie is
// only read.
func packTrie(root *useragent.RuneTrie) (*useragent.RuneTrie, error) {
	l, err := runeTrieLayout()
	if err != nil {
		return nil, err
	}
	// Number the nodes breadth-first; count the child and result entries.
	nodes := []unsafe.Pointer{unsafe.Pointer(root)}
	index := map[unsafe.Pointer]int{unsafe.Pointer(root): 0}
	var children, results int
	for i := 0; i < len(nodes); i++ {
		ch := l.children(nodes[i])
		for j := range ch.len {
			cp, _ := l.child(ch.data, j)
			c := *cp
			if c == nil {
				return nil, fmt.Errorf("%w: nil child", errTrieLayout)
			}
			if _, seen := index[c]; !seen {
				index[c] = len(nodes)
				nodes = append(nodes, c)
			}
		}
		children += ch.len
		results += l.results(nodes[i]).len
	}

	const word = unsafe.Sizeof(uint64(0))
	up := func(n uintptr) uintptr { return (n + word - 1) &^ (word - 1) }
	childArea := up(uintptr(len(nodes)) * l.nodeSize)
	resultArea := childArea + up(uintptr(children)*l.childSize)
	size := resultArea + uintptr(results)*l.resultSize
	block := make([]uint64, (size+word-1)/word)
	base := unsafe.Pointer(unsafe.SliceData(block))
	node := func(i int) unsafe.Pointer { return unsafe.Add(base, uintptr(i)*l.nodeSize) }

	nextChild, nextResult := childArea, resultArea
	for i, old := range nodes {
		n := node(i)
		oldCh := l.children(old)
		if oldCh.len > 0 {
			dst := unsafe.Add(base, nextChild)
			for j := range oldCh.len {
				srcNode, srcR := l.child(oldCh.data, j)
				dstNode, dstR := l.child(dst, j)
				*dstR = *srcR
				*dstNode = node(index[*srcNode])
			}
			*l.children(n) = sliceHeader{dst, oldCh.len, oldCh.len}
			nextChild += uintptr(oldCh.len) * l.childSize
		}
		oldRes := l.results(old)
		if oldRes.len > 0 {
			dst := unsafe.Add(base, nextResult)
			nbytes := uintptr(oldRes.len) * l.resultSize
			copy(unsafe.Slice((*byte)(dst), nbytes), unsafe.Slice((*byte)(oldRes.data), nbytes))
			*l.results(n) = sliceHeader{dst, oldRes.len, oldRes.len}
			nextResult += nbytes
		}
	}
	return (*useragent.RuneTrie)(base), nil
}
