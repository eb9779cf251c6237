package sqlite

import (
	"bufio"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// rawDSN opens path in WAL mode, syncing at every commit, through the WAL
// VFS (gather) or SQLite's own; extra pragmas follow.
func rawDSN(t *testing.T, path string, gather bool, pragmas ...string) string {
	t.Helper()
	if err := registerWALVFS(); err != nil {
		t.Fatal(err)
	}
	q := []string{"_pragma=busy_timeout(10000)", "_pragma=journal_mode(WAL)", "_pragma=synchronous(FULL)", "_txlock=immediate"}
	for _, p := range pragmas {
		q = append(q, "_pragma="+p)
	}
	if gather {
		q = append(q, "vfs="+walVFSName)
	}
	return path + "?" + strings.Join(q, "&")
}

// writeCalls is the number of write system calls the process made
// (Linux's /proc/self/io syscw).
func writeCalls(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/io")
	if err != nil {
		t.Skipf("no /proc/self/io to count write system calls: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "syscw: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Skip("/proc/self/io has no syscw")
	return 0
}

// TestWALVFSGathersWrites: a commit of some 400 pages takes two write
// system calls a page through SQLite's own VFS (a frame's header, then
// its page) and a few dozen through the WAL VFS, and the store's write
// connection uses the WAL VFS.
func TestWALVFSGathersWrites(t *testing.T) {
	writes := func(gather bool) int64 {
		path := filepath.Join(t.TempDir(), "w.db")
		db, err := sql.Open("sqlite", rawDSN(t, path, gather))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		db.SetMaxOpenConns(1)
		if _, err := db.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)`); err != nil {
			t.Fatal(err)
		}
		before := writeCalls(t)
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for range 400 {
			if _, err := tx.Exec(`INSERT INTO t (b) VALUES (randomblob(3000))`); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		return writeCalls(t) - before
	}
	plain, gathered := writes(false), writes(true)
	t.Logf("write system calls of the commit: %d through SQLite's VFS, %d through the WAL VFS", plain, gathered)
	if plain < 800 {
		t.Fatalf("SQLite's own VFS made %d write calls for 400 pages; the test expects two a page", plain)
	}
	if gathered*10 > plain {
		t.Errorf("the WAL VFS made %d write calls against %d: not gathered", gathered, plain)
	}
	if !strings.Contains(dsn("x.db", time.Second, false), "vfs="+walVFSName) {
		t.Errorf("the write connection's DSN does not name the WAL VFS: %s", dsn("x.db", time.Second, false))
	}
	if strings.Contains(dsn("x.db", time.Second, true), "vfs=") {
		t.Errorf("a read connection's DSN names a VFS: %s", dsn("x.db", time.Second, true))
	}
}

// TestWALVFSIntegrity writes through the WAL VFS what makes it work hard:
// transactions larger than the page cache (their pages spill to the WAL
// and are read back), pages rewritten in the same transaction,
// transactions rolled back after writing, while readers through SQLite's
// own VFS check that every transaction they see is whole, and a third
// connection checkpoints. Reopened through SQLite's own VFS, the database
// passes integrity_check and holds exactly the committed rows.
func TestWALVFSIntegrity(t *testing.T) {
	path := filepath.Join(t.TempDir(), "i.db")
	w, err := sql.Open("sqlite", rawDSN(t, path, true, "cache_size(20)"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.SetMaxOpenConns(1)
	for _, q := range []string{
		`CREATE TABLE t (id INTEGER PRIMARY KEY, tx INTEGER NOT NULL, b BLOB NOT NULL, h TEXT NOT NULL)`,
		`CREATE INDEX t_tx ON t (tx, h)`,
		`CREATE TABLE txs (tx INTEGER PRIMARY KEY, n INTEGER NOT NULL)`,
	} {
		if _, err := w.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	r, err := sql.Open("sqlite", rawDSN(t, path, false))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cp, err := sql.Open("sqlite", rawDSN(t, path, false))
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()

	var done atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	check := func(db *sql.DB) error {
		ctx := context.Background()
		c, err := db.Conn(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.ExecContext(ctx, `BEGIN`); err != nil {
			return err
		}
		defer c.ExecContext(ctx, `ROLLBACK`)
		rows, err := c.QueryContext(ctx, `SELECT txs.tx, txs.n, (SELECT COUNT(*) FROM t WHERE t.tx = txs.tx) FROM txs`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var tx, n, got int
			if err := rows.Scan(&tx, &n, &got); err != nil {
				return err
			}
			if got != n {
				return fmt.Errorf("transaction %d: a reader sees %d of its %d rows", tx, got, n)
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		var orphans int
		if err := c.QueryRowContext(ctx, `SELECT COUNT(*) FROM t WHERE tx NOT IN (SELECT tx FROM txs)`).Scan(&orphans); err != nil {
			return err
		}
		if orphans != 0 {
			return fmt.Errorf("a reader sees %d rows of transactions not committed", orphans)
		}
		return nil
	}
	for range 2 {
		wg.Go(func() {
			for !done.Load() {
				if err := check(r); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Go(func() {
		for !done.Load() {
			if _, err := cp.Exec(`PRAGMA wal_checkpoint(PASSIVE)`); err != nil {
				errs <- fmt.Errorf("checkpoint: %w", err)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})

	rng := rand.New(rand.NewPCG(19, 2026))
	committed := 0
	for tx := 1; tx <= 150; tx++ {
		n := 1 + rng.IntN(300)
		if tx%10 == 0 {
			n = 1500 // far beyond the 20-page cache
		}
		err := func() error {
			wtx, err := w.Begin()
			if err != nil {
				return err
			}
			defer wtx.Rollback()
			for range n {
				b := make([]byte, 10+rng.IntN(5000))
				for i := range b {
					b[i] = byte(rng.Uint32())
				}
				sum := sha256.Sum256(b)
				if _, err := wtx.Exec(`INSERT INTO t (tx, b, h) VALUES (?, ?, ?)`, tx, b, hex.EncodeToString(sum[:])); err != nil {
					return err
				}
			}
			if n > 1000 {
				// Read back what this transaction wrote: most of it has
				// spilled to the WAL, the latest of it into the buffer.
				if err := verifyTx(wtx, tx); err != nil {
					return err
				}
			}
			if tx%4 == 0 {
				// Rewrite pages this transaction wrote already.
				if _, err := wtx.Exec(`UPDATE t SET b = b || x'00', h = '' WHERE tx = ? AND id % 3 = 0`, tx); err != nil {
					return err
				}
				if _, err := wtx.Exec(`DELETE FROM t WHERE tx = ? AND h = ''`, tx); err != nil {
					return err
				}
				var left int
				if err := wtx.QueryRow(`SELECT COUNT(*) FROM t WHERE tx = ?`, tx).Scan(&left); err != nil {
					return err
				}
				n = left
			}
			if tx%7 == 0 {
				return errRolledBack // after writing: none of it may stay
			}
			if _, err := wtx.Exec(`INSERT INTO txs (tx, n) VALUES (?, ?)`, tx, n); err != nil {
				return err
			}
			return wtx.Commit()
		}()
		switch {
		case errors.Is(err, errRolledBack):
		case err != nil:
			t.Fatalf("transaction %d: %v", tx, err)
		default:
			committed++
		}
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, db := range []*sql.DB{w, r, cp} {
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}

	// Reopened through SQLite's own VFS.
	db, err := sql.Open("sqlite", rawDSN(t, path, false))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ok string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check = %q, %v", ok, err)
	}
	if err := check(db); err != nil {
		t.Fatal(err)
	}
	var txs int
	if err := db.QueryRow(`SELECT COUNT(*) FROM txs`).Scan(&txs); err != nil || txs != committed {
		t.Fatalf("%d transactions stored, %v; want %d", txs, err, committed)
	}
	rows, err := db.Query(`SELECT id, b, h FROM t`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id int
		var b []byte
		var h string
		if err := rows.Scan(&id, &b, &h); err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != h {
			t.Fatalf("row %d: its blob does not match its hash", id)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d transactions committed (%d rows), %d rolled back", committed, n, 150-committed)
}

var errRolledBack = errors.New("rolled back on purpose")

// verifyTx checks the blobs of transaction tx's rows, inside the
// transaction.
func verifyTx(wtx *sql.Tx, tx int) error {
	rows, err := wtx.Query(`SELECT id, b, h FROM t WHERE tx = ? ORDER BY id`, tx)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id int
		var b []byte
		var h string
		if err := rows.Scan(&id, &b, &h); err != nil {
			return err
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != h {
			return fmt.Errorf("transaction %d reads row %d back with another blob", tx, id)
		}
	}
	return rows.Err()
}

// TestWALStartsOver: under writes without a pause (four writers, so that
// the write lane begins each transaction as the last commits) and reads
// beside them, the WAL starts over (its file cut back) once it has passed
// walRestartBytes, instead of growing by everything written: SQLite alone
// starts it over only when a transaction begins after a checkpoint copied
// all of it, which such a lane never leaves time for.
func TestWALStartsOver(t *testing.T) {
	defer func(n int64) { walRestartBytes = n }(walRestartBytes)
	walRestartBytes = 256 << 10
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "r.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const total = 16 << 20 // bytes of bodies written
	body := []byte(`{"resourceType":"Basic","text":"` + strings.Repeat("x", 2000) + `"}`)
	var written, next atomic.Int64
	var mu sync.Mutex
	var largest, last int64
	shrank := 0
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for written.Load() < total {
				err := s.Write(ctx, func(tx store.Tx) error {
					for range 32 {
						id := fmt.Sprintf("b%d", next.Add(1))
						if err := tx.Put(&store.Resource{Type: "Basic", ID: id, Version: 1, Body: body}, nil); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				written.Add(32 * int64(len(body)))
				if fi, err := os.Stat(path + "-wal"); err == nil {
					mu.Lock()
					largest = max(largest, fi.Size())
					if fi.Size() < last {
						shrank++
					}
					last = fi.Size()
					mu.Unlock()
				}
				if _, err := s.Read(ctx, "Basic", "b1"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d MiB written; the WAL was cut back %d times, %d KiB at most", written.Load()>>20, shrank, largest>>10)
	if shrank == 0 {
		t.Errorf("the WAL grew to %d KiB and never started over", largest>>10)
	}
}

// TestWALRestartBacksOff: a restart that readers held up is not asked
// for again during restartBackoff (the write lane would otherwise wait
// restartWait before every transaction of a long export), and is after.
func TestWALRestartBacksOff(t *testing.T) {
	defer func(n int64) { walRestartBytes = n }(walRestartBytes)
	walRestartBytes = 0 // any WAL is past it
	s, _ := openTemp(t, Options{})
	defer s.Close()
	if err := s.Write(context.Background(), func(tx store.Tx) error {
		return tx.Put(&store.Resource{Type: "Basic", ID: "a", Version: 1, Body: []byte(`{}`)}, nil)
	}); err != nil {
		t.Fatal(err)
	}
	cp := &s.c.cp
	cp.wg.Wait()
	cp.restart.Store(false)
	cp.backoff()
	cp.run()
	if cp.restart.Load() {
		t.Fatal("a restart was asked for during the backoff")
	}
	cp.mu.Lock()
	cp.restartAfter = time.Now().Add(-time.Millisecond)
	cp.mu.Unlock()
	cp.run()
	if !cp.restart.Load() {
		t.Fatal("no restart asked for after the backoff, with the WAL past its bound")
	}
}
