package sqlite

import (
	"errors"
	"sync"
	"unsafe"

	"modernc.org/libc"
	"modernc.org/libc/sys/types"
	sqlite3 "modernc.org/sqlite/lib"
)

// The WAL writes of a commit, gathered.
//
// SQLite appends a commit's pages to the WAL file as frames, each with
// two writes: its 24-byte header, then the page. Each is a pwrite(2)
// system call, and on a virtual machine a system call is dear: some
// 14 µs each here, a third of the write lane's CPU for audited reads and
// an eighth of it for session records (issue 19). The frames of a commit
// are consecutive in the file, so they can go in a few large writes
// instead.
//
// walVFS is SQLite's own unix VFS with the WAL file's writes gathered: a
// write that continues the gathered bytes (the next frame, or the page
// after its header) is copied into a buffer; any other call on the file
// (a sync, a read, a truncation, its size, a file control, closing it),
// a write elsewhere or a full buffer first writes the buffer out, in one
// write, at its offset. Nothing else changes: the same bytes reach the
// same offsets in the same order, and the database, the WAL and the
// shared memory are SQLite's own format (any SQLite reads them).
//
// Why that is safe. SQLite makes a commit visible to other connections
// by the WAL index header in shared memory, and writes that header only
// after it has synced the commit's frames (sqlite3WalFrames, when the
// connection syncs at commits: synchronous=FULL, as every write
// connection of the store is opened, see dsn). A sync writes the buffer
// out first, so no connection can read a committed frame that is still
// in the buffer, and a crash can lose only what had not been synced,
// which SQLite never counts as written. Frames of a transaction not yet
// committed (a page cache spilled) are read back only by the connection
// that wrote them, and a read writes the buffer out first. A write that
// fails when the buffer is written out is reported by the call that
// wrote it out (typically the commit's sync), and the commit fails, as
// it would have at the write.
//
// The files other than WAL files (the database, journals) are opened by
// the unix VFS and keep its methods: nothing of theirs is gathered.

// walVFSName is the VFS the store's connections name in their data
// source name (see dsn).
const walVFSName = "kg-unix-wal"

// walBufSize is the buffer of one WAL file: 31 frames of 4 KiB pages. It
// is the most the unix VFS writes in one call: it takes every write to be
// under 128 KiB (seekAndWriteFd masks the length with 0x1ffff). A commit
// larger than that is written in several writes.
const walBufSize = 0x1ffff

// walVFS is the registered VFS's state.
var walVFS struct {
	once sync.Once
	err  error

	unix   uintptr // SQLite's default (unix) VFS
	subSz  uintptr // its file size: our handle follows it
	orig   sqlite3.Tsqlite3_io_methods
	origAt uintptr // the unix WAL file's methods, as copied into orig

	mu      sync.Mutex
	methods uintptr // ours, for WAL files (C memory, never freed)
	files   map[uintptr]*walBuf
	next    uintptr
}

// walBuf is an open WAL file's gathered writes.
type walBuf struct {
	mem uintptr // walBufSize bytes of C memory, 0 until the first write
	off int64   // the file offset of mem[0]
	n   int     // bytes gathered
}

// registerWALVFS registers walVFS with SQLite, once per process.
func registerWALVFS() error {
	walVFS.once.Do(func() { walVFS.err = registerWAL() })
	return walVFS.err
}

func registerWAL() error {
	tls := libc.NewTLS()
	defer tls.Close()
	unix := sqlite3.Xsqlite3_vfs_find(tls, 0)
	if unix == 0 {
		return errors.New("sqlite: no default VFS to build the WAL VFS on")
	}
	u := (*sqlite3.Tsqlite3_vfs)(ptr(unix))
	name, err := libc.CString(walVFSName)
	if err != nil {
		return err
	}
	p := libc.Xcalloc(tls, 1, types.Size_t(unsafe.Sizeof(sqlite3.Tsqlite3_vfs{})))
	if p == 0 {
		return errors.New("sqlite: out of memory registering the WAL VFS")
	}
	v := (*sqlite3.Tsqlite3_vfs)(ptr(p))
	*v = *u
	v.FpNext = 0
	v.FzName = name
	walVFS.unix = unix
	walVFS.subSz = (uintptr(u.FszOsFile) + 7) &^ 7
	v.FszOsFile = int32(walVFS.subSz + unsafe.Sizeof(uintptr(0)))
	walVFS.files = map[uintptr]*walBuf{}
	*(*func(*libc.TLS, uintptr, uintptr, uintptr, int32, uintptr) int32)(unsafe.Pointer(&v.FxOpen)) = walOpen
	// The VFS methods that use the VFS they are given get SQLite's own;
	// the others (randomness, sleep, time, errors, system calls) ignore
	// it. (Go functions stored in C memory: top-level ones, never
	// closures, which the collector could free.)
	*(*func(*libc.TLS, uintptr, uintptr, int32) int32)(unsafe.Pointer(&v.FxDelete)) = walDelete
	*(*func(*libc.TLS, uintptr, uintptr, int32, uintptr) int32)(unsafe.Pointer(&v.FxAccess)) = walAccess
	*(*func(*libc.TLS, uintptr, uintptr, int32, uintptr) int32)(unsafe.Pointer(&v.FxFullPathname)) = walFullPathname
	if rc := sqlite3.Xsqlite3_vfs_register(tls, p, 0); rc != sqlite3.SQLITE_OK {
		return errors.New("sqlite: registering the WAL VFS failed")
	}
	return nil
}

func walDelete(tls *libc.TLS, _ uintptr, zPath uintptr, dirSync int32) int32 {
	u := (*sqlite3.Tsqlite3_vfs)(ptr(walVFS.unix))
	return (*(*func(*libc.TLS, uintptr, uintptr, int32) int32)(unsafe.Pointer(&struct{ uintptr }{u.FxDelete})))(tls, walVFS.unix, zPath, dirSync)
}

func walAccess(tls *libc.TLS, _ uintptr, zPath uintptr, flags int32, pResOut uintptr) int32 {
	u := (*sqlite3.Tsqlite3_vfs)(ptr(walVFS.unix))
	return (*(*func(*libc.TLS, uintptr, uintptr, int32, uintptr) int32)(unsafe.Pointer(&struct{ uintptr }{u.FxAccess})))(tls, walVFS.unix, zPath, flags, pResOut)
}

func walFullPathname(tls *libc.TLS, _ uintptr, zPath uintptr, nOut int32, zOut uintptr) int32 {
	u := (*sqlite3.Tsqlite3_vfs)(ptr(walVFS.unix))
	return (*(*func(*libc.TLS, uintptr, uintptr, int32, uintptr) int32)(unsafe.Pointer(&struct{ uintptr }{u.FxFullPathname})))(tls, walVFS.unix, zPath, nOut, zOut)
}

// ptr is p as a pointer: C memory, which the Go collector neither moves
// nor frees.
func ptr(p uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }

// walOpen is the VFS's xOpen: the unix VFS opens the file; a WAL file
// then gets walVFS's methods and a buffer.
func walOpen(tls *libc.TLS, _ uintptr, zName uintptr, pFile uintptr, flags int32, pOutFlags uintptr) int32 {
	u := (*sqlite3.Tsqlite3_vfs)(ptr(walVFS.unix))
	rc := (*(*func(*libc.TLS, uintptr, uintptr, uintptr, int32, uintptr) int32)(unsafe.Pointer(&struct{ uintptr }{u.FxOpen})))(tls, walVFS.unix, zName, pFile, flags, pOutFlags)
	f := (*sqlite3.Tsqlite3_file)(ptr(pFile))
	if rc != sqlite3.SQLITE_OK || flags&sqlite3.SQLITE_OPEN_WAL == 0 || f.FpMethods == 0 {
		return rc
	}
	walVFS.mu.Lock()
	defer walVFS.mu.Unlock()
	if walVFS.methods == 0 {
		m := libc.Xcalloc(tls, 1, types.Size_t(unsafe.Sizeof(sqlite3.Tsqlite3_io_methods{})))
		if m == 0 {
			return rc // the file as the unix VFS made it
		}
		walVFS.orig = *(*sqlite3.Tsqlite3_io_methods)(ptr(f.FpMethods))
		walVFS.origAt = f.FpMethods
		ours := (*sqlite3.Tsqlite3_io_methods)(ptr(m))
		*ours = walVFS.orig
		*(*func(*libc.TLS, uintptr) int32)(unsafe.Pointer(&ours.FxClose)) = walClose
		*(*func(*libc.TLS, uintptr, uintptr, int32, int64) int32)(unsafe.Pointer(&ours.FxRead)) = walRead
		*(*func(*libc.TLS, uintptr, uintptr, int32, int64) int32)(unsafe.Pointer(&ours.FxWrite)) = walWrite
		*(*func(*libc.TLS, uintptr, int64) int32)(unsafe.Pointer(&ours.FxTruncate)) = walTruncate
		*(*func(*libc.TLS, uintptr, int32) int32)(unsafe.Pointer(&ours.FxSync)) = walSync
		*(*func(*libc.TLS, uintptr, uintptr) int32)(unsafe.Pointer(&ours.FxFileSize)) = walFileSize
		*(*func(*libc.TLS, uintptr, int32, uintptr) int32)(unsafe.Pointer(&ours.FxFileControl)) = walFileControl
		walVFS.methods = m
	}
	if f.FpMethods != walVFS.origAt {
		return rc // not the methods ours forward to: left as it is
	}
	walVFS.next++
	h := walVFS.next
	walVFS.files[h] = &walBuf{}
	*(*uintptr)(ptr(pFile + walVFS.subSz)) = h
	f.FpMethods = walVFS.methods
	return rc
}

// bufOf is the buffer of pFile, a WAL file walOpen opened.
func bufOf(pFile uintptr) *walBuf {
	h := *(*uintptr)(ptr(pFile + walVFS.subSz))
	walVFS.mu.Lock()
	defer walVFS.mu.Unlock()
	return walVFS.files[h]
}

// The unix VFS's methods of a WAL file.

func origWrite(tls *libc.TLS, pFile, buf uintptr, n int32, off int64) int32 {
	return (*(*func(*libc.TLS, uintptr, uintptr, int32, int64) int32)(unsafe.Pointer(&struct{ uintptr }{walVFS.orig.FxWrite})))(tls, pFile, buf, n, off)
}

// flush writes the gathered bytes out, in one write.
func (b *walBuf) flush(tls *libc.TLS, pFile uintptr) int32 {
	if b.n == 0 {
		return sqlite3.SQLITE_OK
	}
	n := b.n
	b.n = 0
	return origWrite(tls, pFile, b.mem, int32(n), b.off)
}

func walWrite(tls *libc.TLS, pFile, zBuf uintptr, iAmt int32, iOfst int64) int32 {
	b := bufOf(pFile)
	n := int(iAmt)
	if b.n > 0 && iOfst == b.off+int64(b.n) && b.n+n <= walBufSize {
		copy((*libc.RawMem)(ptr(b.mem))[b.n:b.n+n], (*libc.RawMem)(ptr(zBuf))[:n:n])
		b.n += n
		return sqlite3.SQLITE_OK
	}
	if rc := b.flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	if b.mem == 0 && n <= walBufSize {
		b.mem = libc.Xmalloc(tls, walBufSize)
	}
	if b.mem == 0 || n > walBufSize {
		return origWrite(tls, pFile, zBuf, iAmt, iOfst)
	}
	copy((*libc.RawMem)(ptr(b.mem))[:n], (*libc.RawMem)(ptr(zBuf))[:n:n])
	b.off, b.n = iOfst, n
	return sqlite3.SQLITE_OK
}

func walRead(tls *libc.TLS, pFile, zBuf uintptr, iAmt int32, iOfst int64) int32 {
	if rc := bufOf(pFile).flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return (*(*func(*libc.TLS, uintptr, uintptr, int32, int64) int32)(unsafe.Pointer(&struct{ uintptr }{walVFS.orig.FxRead})))(tls, pFile, zBuf, iAmt, iOfst)
}

func walTruncate(tls *libc.TLS, pFile uintptr, size int64) int32 {
	if rc := bufOf(pFile).flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return (*(*func(*libc.TLS, uintptr, int64) int32)(unsafe.Pointer(&struct{ uintptr }{walVFS.orig.FxTruncate})))(tls, pFile, size)
}

func walSync(tls *libc.TLS, pFile uintptr, flags int32) int32 {
	if rc := bufOf(pFile).flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return (*(*func(*libc.TLS, uintptr, int32) int32)(unsafe.Pointer(&struct{ uintptr }{walVFS.orig.FxSync})))(tls, pFile, flags)
}

func walFileSize(tls *libc.TLS, pFile, pSize uintptr) int32 {
	if rc := bufOf(pFile).flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return (*(*func(*libc.TLS, uintptr, uintptr) int32)(unsafe.Pointer(&struct{ uintptr }{walVFS.orig.FxFileSize})))(tls, pFile, pSize)
}

func walFileControl(tls *libc.TLS, pFile uintptr, op int32, pArg uintptr) int32 {
	if rc := bufOf(pFile).flush(tls, pFile); rc != sqlite3.SQLITE_OK {
		return rc
	}
	return (*(*func(*libc.TLS, uintptr, int32, uintptr) int32)(unsafe.Pointer(&struct{ uintptr }{walVFS.orig.FxFileControl})))(tls, pFile, op, pArg)
}

// walClose writes the buffer out, frees it and closes the file.
func walClose(tls *libc.TLS, pFile uintptr) int32 {
	h := *(*uintptr)(ptr(pFile + walVFS.subSz))
	walVFS.mu.Lock()
	b := walVFS.files[h]
	delete(walVFS.files, h)
	walVFS.mu.Unlock()
	var rc int32 = sqlite3.SQLITE_OK
	if b != nil {
		rc = b.flush(tls, pFile)
		if b.mem != 0 {
			libc.Xfree(tls, b.mem)
		}
	}
	if crc := (*(*func(*libc.TLS, uintptr) int32)(unsafe.Pointer(&struct{ uintptr }{walVFS.orig.FxClose})))(tls, pFile); rc == sqlite3.SQLITE_OK {
		rc = crc
	}
	return rc
}
