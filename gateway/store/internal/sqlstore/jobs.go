package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Durable jobs (store.Jobs): one row per job in jobs, its files' parts in
// job_parts (job_id, file, part). A runner's writes (SaveJob, FinishJob)
// are fenced by its claim token: each first updates the job row WHERE
// claim = its token AND status = 'running', and writes nothing else when
// no row changed. Where writers run in parallel that UPDATE holds the row
// until the transaction ends, so a claim, a cancel and a runner's save of
// one job are serialised, and a runner that lost its job (the lease ran
// out and another claimed it, or it was cancelled) never writes a part.

const jobCols = `id, kind, tenant, owner, status, request, progress_done, progress_total, checkpoint, result, error,
	attempts, claim, lease_until, created, updated, finished, expires`

// jobPartsPage is how many parts JobFile reads per statement.
const jobPartsPage = 4

// CreateJob implements store.Jobs. With a limit, the count of the owner's
// active jobs and the insert are one write transaction: SQLite's one
// writer serialises them; on PostgreSQL, where writers run in parallel, the
// transaction first takes the Dialect.JobLock of (tenant, owner, kind), so
// the submits of one client and kind, from any process, count one after
// the other, each seeing the jobs the ones before it committed.
func (s *Store) CreateJob(ctx context.Context, j *store.Job, limit *store.JobLimit) error {
	switch j.Status {
	case "":
		j.Status = store.JobQueued
	case store.JobQueued, store.JobUploading:
	default:
		return fmt.Errorf("%s: create job: status %q", s.d.Name, j.Status)
	}
	// A job's tenant is its owner's: search.AllTenants for an all-tenant
	// client.
	if j.Tenant != search.AllTenants && !validTenant(j.Tenant) {
		return fmt.Errorf("%s: create job: %q is not a tenant", s.d.Name, j.Tenant)
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	j.Created, j.Updated = now, now
	req := j.Request
	if req == nil {
		req = []byte{}
	}
	// A submit refused at its limit is an answer, not a failure of the
	// transaction: fn returns nil without inserting, so that the writes
	// group-committed with it are not rolled back and run again (see
	// commit.go). fn may run more than once: refused is set by its last
	// run.
	var refused error
	err := s.write(ctx, func(t *tx) error {
		refused = nil
		if limit != nil {
			var err error
			if refused, err = t.checkJobLimit(j, limit); err != nil || refused != nil {
				return err
			}
		}
		_, err := t.c.Exec(t.ctx, s.bind(`INSERT INTO jobs (id, kind, tenant, owner, status, request, progress_done,
			progress_total, error, attempts, claim, lease_until, created, updated, finished, expires)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, '', 0, '', 0, ?, ?, 0, ?)`),
			j.ID, s.text(j.Kind), j.Tenant, s.text(j.Owner), j.Status, req, j.Done, j.Total,
			now.UnixMilli(), now.UnixMilli(), millis(j.Expires))
		if err != nil {
			return fmt.Errorf("%s: create job: %w", s.d.Name, s.err(t.ctx, err))
		}
		return nil
	})
	if err != nil {
		return err
	}
	return refused
}

// checkJobLimit returns a refusal wrapping store.ErrLimit when j's owner
// has limit.Max jobs of j's kind in j's tenant queued, running, or
// uploading and not expired at limit.Now; its error is the database's.
func (t *tx) checkJobLimit(j *store.Job, limit *store.JobLimit) (refused, err error) {
	s := t.s
	if s.d.JobLock != "" {
		key := j.Tenant + "\x1f" + s.text(j.Owner) + "\x1f" + s.text(j.Kind)
		if _, err := t.c.Exec(t.ctx, s.bind(s.d.JobLock), key); err != nil {
			return nil, fmt.Errorf("%s: create job: %w", s.d.Name, s.err(t.ctx, err))
		}
	}
	var n int
	err = t.c.QueryRow(t.ctx, s.bind(`SELECT COUNT(*) FROM jobs WHERE tenant = ? AND owner = ? AND kind = ?
		AND (status IN (?, ?) OR status = ? AND (expires = 0 OR expires > ?))`),
		j.Tenant, s.text(j.Owner), s.text(j.Kind), store.JobQueued, store.JobRunning, store.JobUploading,
		limit.Now.UnixMilli()).Scan(&n)
	if err != nil {
		return nil, fmt.Errorf("%s: create job: %w", s.d.Name, s.err(t.ctx, err))
	}
	if n >= limit.Max {
		return fmt.Errorf("create %s job: %d active: %w", s.text(j.Kind), n, store.ErrLimit), nil
	}
	return nil, nil
}

// Job implements store.Jobs.
func (s *Store) Job(ctx context.Context, id string) (*store.Job, error) {
	var j *store.Job
	err := s.db.Read(ctx, func(c Conn) error {
		var err error
		j, err = scanJob(c.QueryRow(ctx, s.bind(`SELECT `+jobCols+` FROM jobs WHERE id = ?`), id))
		if errNoRows(err) {
			return fmt.Errorf("job %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("%s: job: %w", s.d.Name, s.err(ctx, err))
		}
		return nil
	})
	return j, err
}

// ListJobs implements store.Jobs.
func (s *Store) ListJobs(ctx context.Context, f store.JobFilter) ([]*store.Job, error) {
	b := s.builder()
	b.Add(`SELECT id, kind, tenant, owner, status, request, progress_done, progress_total, NULL, NULL, error,
		attempts, claim, lease_until, created, updated, finished, expires FROM jobs WHERE 1 = 1`)
	switch {
	case f.Tenant == search.AllTenants:
	case !validTenant(f.Tenant):
		return nil, nil
	default:
		b.Add(` AND tenant = ?`, f.Tenant)
	}
	// (An all-tenant client's own jobs have the tenant search.AllTenants:
	// list them with Tenant AllTenants and Owner.)
	if f.Kind != "" {
		b.Add(` AND kind = ?`, f.Kind)
	}
	if f.Owner != "" {
		b.Add(` AND owner = ?`, f.Owner)
	}
	if f.Status != "" {
		b.Add(` AND status = ?`, f.Status)
	}
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	b.Add(` ORDER BY created DESC, id LIMIT ?`, limit)
	var out []*store.Job
	err := s.db.Read(ctx, func(c Conn) error {
		rows, err := c.Query(ctx, b.SQL(), b.Args()...)
		if err != nil {
			return fmt.Errorf("%s: list jobs: %w", s.d.Name, s.err(ctx, err))
		}
		defer rows.Close()
		out = nil
		for rows.Next() {
			j, err := scanJob(rows)
			if err != nil {
				return fmt.Errorf("%s: list jobs: %w", s.d.Name, s.err(ctx, err))
			}
			out = append(out, j)
		}
		return rows.Err()
	})
	return out, err
}

// PutJobParts implements store.Jobs.
func (s *Store) PutJobParts(ctx context.Context, id string, parts []store.JobPart) error {
	return s.write(ctx, func(t *tx) error {
		var status string
		err := t.c.QueryRow(t.ctx, s.bind(`SELECT status FROM jobs WHERE id = ?`+s.forUpdate()), id).Scan(&status)
		if errNoRows(err) || err == nil && status != store.JobUploading {
			return fmt.Errorf("job %s is not uploading: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("%s: put job parts: %w", s.d.Name, s.err(t.ctx, err))
		}
		return t.insertParts(id, parts)
	})
}

// insertParts inserts parts of job id.
func (t *tx) insertParts(id string, parts []store.JobPart) error {
	s := t.s
	if len(parts) == 0 {
		return nil
	}
	stmts := make([]Stmt, len(parts))
	for i, p := range parts {
		data := p.Data
		if data == nil {
			data = []byte{}
		}
		stmts[i] = Stmt{SQL: s.bind(`INSERT INTO job_parts (job_id, file, part, data) VALUES (?, ?, ?, ?)`), Args: []any{id, p.File, p.Part, data}}
	}
	if err := t.c.Batch(t.ctx, stmts); err != nil {
		return fmt.Errorf("%s: job parts: %w", s.d.Name, s.err(t.ctx, err))
	}
	return nil
}

// QueueJob implements store.Jobs.
func (s *Store) QueueJob(ctx context.Context, id string, total int64) error {
	return s.jobUpdate(ctx, "queue job", `UPDATE jobs SET status = 'queued', expires = 0, progress_total = ?, updated = ?
		WHERE id = ? AND status = 'uploading'`, total, s.now().UnixMilli(), id)
}

// jobUpdate runs one UPDATE of a job in a write transaction: ErrNotFound
// when it changes no row.
func (s *Store) jobUpdate(ctx context.Context, op, q string, args ...any) error {
	return s.write(ctx, func(t *tx) error {
		n, err := t.c.Exec(t.ctx, s.bind(q), args...)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", s.d.Name, op, s.err(t.ctx, err))
		}
		if n == 0 {
			return fmt.Errorf("%s: %w", op, store.ErrNotFound)
		}
		return nil
	})
}

// ClaimJob implements store.Jobs: the candidate (the oldest job of the
// tenant running fewest) is selected and updated in one write transaction; where writers run in parallel the SELECT skips
// rows another claim has locked (FOR UPDATE SKIP LOCKED) and the UPDATE
// checks the row is still claimable.
func (s *Store) ClaimJob(ctx context.Context, kinds []string, claim string, now time.Time, lease time.Duration) (*store.Job, error) {
	if len(kinds) == 0 {
		return nil, nil
	}
	nowMS := now.UnixMilli()
	b := s.builder()
	// Fair across tenants (probe p30 F4: FIFO let one clinic's imports
	// hold up every other tenant's jobs): the oldest job of the tenant
	// with the fewest jobs running under a live lease. The running jobs
	// are counted once, by tenant (jobs_claim's status prefix), not per
	// candidate: a correlated count read every job a tenant keeps (24 h
	// of finished ones) for each job queued, under the write lock.
	b.Add(`SELECT j.id FROM jobs j LEFT JOIN (SELECT tenant, COUNT(*) AS n FROM jobs
		WHERE status = 'running' AND lease_until > ? GROUP BY tenant) r ON r.tenant = j.tenant
		WHERE (j.status = 'queued' OR (j.status = 'running' AND j.lease_until <= ?)) AND `, nowMS, nowMS)
	b.in("j.kind", kinds)
	b.Add(` ORDER BY COALESCE(r.n, 0), j.created, j.id LIMIT 1`)
	sel := b.SQL()
	if s.d.RowLocks {
		sel += " FOR UPDATE OF j SKIP LOCKED"
	}
	var j *store.Job
	err := s.write(ctx, func(t *tx) error {
		var id string
		err := t.c.QueryRow(t.ctx, sel, b.Args()...).Scan(&id)
		if errNoRows(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: claim job: %w", s.d.Name, s.err(t.ctx, err))
		}
		j, err = scanJob(t.c.QueryRow(t.ctx, s.bind(`UPDATE jobs SET status = 'running', claim = ?, lease_until = ?,
			attempts = attempts + 1, updated = ?
			WHERE id = ? AND (status = 'queued' OR (status = 'running' AND lease_until <= ?))
			RETURNING `+jobCols), claim, now.Add(lease).UnixMilli(), nowMS, id, nowMS))
		if errNoRows(err) {
			j = nil
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: claim job: %w", s.d.Name, s.err(t.ctx, err))
		}
		return nil
	})
	if err != nil {
		return nil, err // not claimed: the transaction did not commit (probe p37 F1's outbox twin)
	}
	return j, nil
}

// SaveJob implements store.Jobs.
func (s *Store) SaveJob(ctx context.Context, id, claim string, until time.Time, p store.JobProgress) error {
	return s.write(ctx, func(t *tx) error {
		q := `UPDATE jobs SET lease_until = ?, progress_done = ?, progress_total = ?, updated = ?`
		args := []any{until.UnixMilli(), p.Done, p.Total, s.now().UnixMilli()}
		if p.Checkpoint != nil {
			// A checkpoint is progress: the claims are counted again from
			// this one (a job that keeps advancing is never given up).
			q += `, checkpoint = ?, attempts = 1`
			args = append(args, p.Checkpoint)
		}
		q += ` WHERE id = ? AND claim = ? AND status = 'running'`
		n, err := t.c.Exec(t.ctx, s.bind(q), append(args, id, claim)...)
		if err != nil {
			return fmt.Errorf("%s: save job: %w", s.d.Name, s.err(t.ctx, err))
		}
		if n == 0 {
			return fmt.Errorf("job %s is no longer this runner's: %w", id, store.ErrNotFound)
		}
		for _, f := range p.Drop {
			if _, err := t.c.Exec(t.ctx, s.bind(`DELETE FROM job_parts WHERE job_id = ? AND file = ?`), id, f); err != nil {
				return fmt.Errorf("%s: save job: %w", s.d.Name, s.err(t.ctx, err))
			}
		}
		return t.insertParts(id, p.Parts)
	})
}

// FinishJob implements store.Jobs.
func (s *Store) FinishJob(ctx context.Context, id, claim string, e store.JobEnd) error {
	now := s.now().UnixMilli()
	switch e.Status {
	case store.JobQueued:
		return s.jobUpdate(ctx, "release job", `UPDATE jobs SET status = 'queued', claim = '', lease_until = 0, updated = ?
			WHERE id = ? AND claim = ? AND status = 'running'`, now, id, claim)
	case store.JobCancelled:
		return s.jobUpdate(ctx, "record cancelled job", `UPDATE jobs SET result = ?, progress_done = ?, progress_total = ?,
			claim = '', updated = ? WHERE id = ? AND claim = ? AND status = 'cancelled'`, e.Result, e.Done, e.Total, now, id, claim)
	case store.JobDone, store.JobFailed:
		result := e.Result
		if result == nil {
			result = []byte{}
		}
		return s.jobUpdate(ctx, "finish job", `UPDATE jobs SET status = ?, result = ?, error = ?, progress_done = ?,
			progress_total = ?, claim = '', lease_until = 0, updated = ?, finished = ?, expires = ?
			WHERE id = ? AND claim = ? AND status = 'running'`,
			e.Status, result, s.text(e.Error), e.Done, e.Total, now, now, millis(e.Expires), id, claim)
	}
	return fmt.Errorf("%s: finish job: status %q", s.d.Name, e.Status)
}

// CancelJob implements store.Jobs.
func (s *Store) CancelJob(ctx context.Context, id string, expires time.Time) error {
	now := s.now().UnixMilli()
	return s.write(ctx, func(t *tx) error {
		// The claim stays: the runner of a running job records its final
		// state under it (FinishJob), and a cancelled job is never claimed.
		// A job that had ended is deleted, its finish time kept
		// (store.JobDeleted); the SET reads the row as it was.
		n, err := t.c.Exec(t.ctx, s.bind(`UPDATE jobs SET
			status = CASE WHEN status IN ('done', 'failed') THEN 'deleted' ELSE 'cancelled' END, lease_until = 0, updated = ?,
			finished = CASE WHEN status IN ('done', 'failed') THEN finished ELSE ? END, expires = ?
			WHERE id = ? AND status NOT IN ('cancelled', 'deleted')`),
			now, now, millis(expires), id)
		if err != nil {
			return fmt.Errorf("%s: cancel job: %w", s.d.Name, s.err(t.ctx, err))
		}
		if n == 0 {
			return fmt.Errorf("cancel job %s: %w", id, store.ErrNotFound)
		}
		if _, err := t.c.Exec(t.ctx, s.bind(`DELETE FROM job_parts WHERE job_id = ?`), id); err != nil {
			return fmt.Errorf("%s: cancel job: %w", s.d.Name, s.err(t.ctx, err))
		}
		return nil
	})
}

// DropUpload implements store.Jobs.
func (s *Store) DropUpload(ctx context.Context, id string) error {
	return s.write(ctx, func(t *tx) error {
		n, err := t.c.Exec(t.ctx, s.bind(`DELETE FROM jobs WHERE id = ? AND status = 'uploading'`), id)
		if err != nil {
			return fmt.Errorf("%s: drop upload: %w", s.d.Name, s.err(t.ctx, err))
		}
		if n == 0 {
			return fmt.Errorf("drop upload %s: %w", id, store.ErrNotFound)
		}
		if _, err := t.c.Exec(t.ctx, s.bind(`DELETE FROM job_parts WHERE job_id = ?`), id); err != nil {
			return fmt.Errorf("%s: drop upload: %w", s.d.Name, s.err(t.ctx, err))
		}
		return nil
	})
}

// JobFile implements store.Jobs: a few parts per statement, each on a
// connection of its own (no transaction is held while fn writes).
func (s *Store) JobFile(ctx context.Context, id string, file int, fn func(data []byte) error) error {
	next := 0
	for {
		var parts [][]byte
		err := s.db.Read(ctx, func(c Conn) error {
			rows, err := c.Query(ctx, s.bind(`SELECT part, data FROM job_parts WHERE job_id = ? AND file = ? AND part >= ?
				ORDER BY part LIMIT ?`), id, file, next, jobPartsPage)
			if err != nil {
				return err
			}
			defer rows.Close()
			parts = parts[:0]
			for rows.Next() {
				var n int
				var data []byte
				if err := rows.Scan(&n, &data); err != nil {
					return err
				}
				if n != next+len(parts) {
					return fmt.Errorf("job %s file %d: part %d missing", id, file, next+len(parts))
				}
				parts = append(parts, data)
			}
			return rows.Err()
		})
		if err != nil {
			return fmt.Errorf("%s: job file: %w", s.d.Name, s.err(ctx, err))
		}
		for _, p := range parts {
			if err := fn(p); err != nil {
				return err
			}
		}
		if len(parts) < jobPartsPage {
			return nil
		}
		next += len(parts)
	}
}

// PurgeJobs implements store.Jobs: the expired jobs and their parts, in
// one write transaction.
func (s *Store) PurgeJobs(ctx context.Context, now time.Time, limit int) (int, error) {
	if limit <= 0 {
		limit = 10
	}
	sel := `SELECT id FROM jobs WHERE expires > 0 AND expires <= ? ORDER BY expires LIMIT ?`
	if s.d.RowLocks {
		sel += " FOR UPDATE SKIP LOCKED"
	}
	var n int
	err := s.write(ctx, func(t *tx) error {
		rows, err := t.c.Query(t.ctx, s.bind(sel), now.UnixMilli(), limit)
		if err != nil {
			return fmt.Errorf("%s: purge jobs: %w", s.d.Name, s.err(t.ctx, err))
		}
		var ids []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return fmt.Errorf("%s: purge jobs: %w", s.d.Name, s.err(t.ctx, err))
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("%s: purge jobs: %w", s.d.Name, s.err(t.ctx, err))
		}
		for _, id := range ids {
			for _, q := range []string{`DELETE FROM job_parts WHERE job_id = ?`, `DELETE FROM jobs WHERE id = ?`} {
				if _, err := t.c.Exec(t.ctx, s.bind(q), id); err != nil {
					return fmt.Errorf("%s: purge jobs: %w", s.d.Name, s.err(t.ctx, err))
				}
			}
		}
		n = len(ids)
		return nil
	})
	return n, err
}

// scanJob reads a row of jobCols.
func scanJob(r Row) (*store.Job, error) {
	j := &store.Job{}
	var lease, created, updated, finished, expires int64
	if err := r.Scan(&j.ID, &j.Kind, &j.Tenant, &j.Owner, &j.Status, &j.Request, &j.Done, &j.Total, &j.Checkpoint,
		&j.Result, &j.Error, &j.Attempts, &j.Claim, &lease, &created, &updated, &finished, &expires); err != nil {
		return nil, err
	}
	j.LeaseUntil, j.Created, j.Updated = fromMillis(lease), fromMillis(created), fromMillis(updated)
	j.Finished, j.Expires = fromMillis(finished), fromMillis(expires)
	return j, nil
}

// millis is t in unix milliseconds, 0 for the zero time.
func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMillis is the time of unix milliseconds, the zero time for 0.
func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}
