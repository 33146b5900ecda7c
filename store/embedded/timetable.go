package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/feedgate/feedgate/store"
)

// A timetable (store.Timetable) is two buckets:
//
//	<jobs>/<job>          jobRecord as JSON: due time, lease, requests
//	<due>/<due ms><job>   (empty): jobs by due time (for a leased job: when
//	                      its lease ends)
//
// Ingest's jobs are in jobs/jobsDue, webhook deliveries' in
// dlvJobs/dlvDue, where a delivery's job is named by its record's key.
type timetable struct {
	s         *Store
	jobs, due []byte
}

var _ store.Timetable = (*timetable)(nil)

// jobRecord is a job of a timetable. Times are Unix milliseconds.
type jobRecord struct {
	// Due is when the job is due; while leased, when the lease ends.
	Due int64 `json:"due"`
	// Token and Until describe the lease; Again is the earliest time
	// asked for while leased (0: none).
	Token string `json:"token,omitempty"`
	Until int64  `json:"until,omitempty"`
	Again int64  `json:"again,omitempty"`
	// Hold is the end of a back-off: Schedule (but Override) does not make
	// the job due before it.
	Hold int64 `json:"hold,omitempty"`
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func dueKey(due int64, job []byte) []byte {
	k := make([]byte, 8, 8+len(job))
	// Offset so that negative times (never expected) still sort first.
	binary.BigEndian.PutUint64(k, uint64(due)^(1<<63))
	return append(k, job...)
}

func dueOf(k []byte) int64 { return int64(binary.BigEndian.Uint64(k[:8]) ^ (1 << 63)) }

// jobs is a timetable inside a transaction.
type jobs struct {
	recs, due *bolt.Bucket
}

// open returns the timetable in a write transaction, creating its buckets.
func (t *timetable) open(tx *bolt.Tx) (jobs, error) {
	recs, err := tx.CreateBucketIfNotExists(t.jobs)
	if err != nil {
		return jobs{}, err
	}
	due, err := tx.CreateBucketIfNotExists(t.due)
	if err != nil {
		return jobs{}, err
	}
	return jobs{recs, due}, nil
}

// read returns the timetable in a read transaction; ok is false when it has
// never been written.
func (t *timetable) read(tx *bolt.Tx) (jobs, bool) {
	recs, due := tx.Bucket(t.jobs), tx.Bucket(t.due)
	return jobs{recs, due}, recs != nil && due != nil
}

func (j jobs) get(job []byte) (jobRecord, bool, error) {
	v := j.recs.Get(job)
	if v == nil {
		return jobRecord{}, false, nil
	}
	var r jobRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return r, false, fmt.Errorf("embedded store: job %q is corrupt: %w", job, err)
	}
	return r, true, nil
}

// put stores r, moving the job's entry in the due index from old (when
// there was one).
func (j jobs) put(job []byte, r jobRecord, old *jobRecord) error {
	if old != nil {
		if err := j.due.Delete(dueKey(old.Due, job)); err != nil {
			return err
		}
	}
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := j.recs.Put(job, v); err != nil {
		return err
	}
	return j.due.Put(dueKey(r.Due, job), nil)
}

// remove forgets a job and its claim.
func (j jobs) remove(job []byte) error {
	r, ok, err := j.get(job)
	if err != nil || !ok {
		return err
	}
	if err := j.due.Delete(dueKey(r.Due, job)); err != nil {
		return err
	}
	return j.recs.Delete(job)
}

// schedule adds or moves a job as mode says; it reports whether it existed.
func (j jobs) schedule(job []byte, at int64, mode store.ScheduleMode) (bool, error) {
	r, ok, err := j.get(job)
	switch {
	case err != nil:
		return false, err
	case !ok && mode == store.IfPresent:
		return false, nil
	case !ok:
		return false, j.put(job, jobRecord{Due: at}, nil)
	case mode == store.IfAbsent:
		return true, nil
	}
	if mode != store.Override && r.Hold > at {
		at = r.Hold
	}
	switch {
	case r.Token != "":
		if r.Again == 0 || at < r.Again {
			r.Again = at
			v, err := json.Marshal(r)
			if err != nil {
				return true, err
			}
			return true, j.recs.Put(job, v)
		}
	case at < r.Due:
		old := r
		r.Due = at
		return true, j.put(job, r, &old)
	}
	return true, nil
}

// claimed is a job claim made in a transaction.
type claimed struct {
	job     []byte
	retaken bool
}

// claimScan bounds how many due entries one claim looks at beyond max
// (due jobs that are leased are skipped).
const claimScan = 256

// claim leases up to max jobs due at now, earliest first, until until.
// accept, when given, is asked about each job before it is claimed; a job
// it refuses is removed.
func (j jobs) claim(now, until int64, max int, token string, accept func(job []byte) bool) ([]claimed, error) {
	var due [][]byte
	c := j.due.Cursor()
	for k, _ := c.First(); k != nil && len(due) < max+claimScan; k, _ = c.Next() {
		if len(k) < 8 || dueOf(k) > now {
			break
		}
		due = append(due, bytes.Clone(k[8:]))
	}
	var out []claimed
	for _, job := range due {
		if len(out) >= max {
			break
		}
		r, ok, err := j.get(job)
		if err != nil {
			return nil, err
		}
		if !ok || (r.Token != "" && r.Until > now) {
			continue
		}
		if accept != nil && !accept(job) {
			if err := j.remove(job); err != nil {
				return nil, err
			}
			continue
		}
		old := r
		if err := j.put(job, jobRecord{Due: until, Token: token, Until: until}, &old); err != nil {
			return nil, err
		}
		out = append(out, claimed{job: job, retaken: r.Token != ""})
	}
	return out, nil
}

// held reports whether the job's lease is held with token.
func (j jobs) held(job []byte, token string) (bool, error) {
	r, ok, err := j.get(job)
	return ok && r.Token == token, err
}

// release ends a held claim (check held first) and schedules the job at
// next (0: remove it), or earlier when asked for while claimed unless
// backing off.
func (j jobs) release(job []byte, next int64, backoff bool) error {
	r, _, err := j.get(job)
	if err != nil {
		return err
	}
	backoff = backoff && next != 0
	if !backoff && r.Again != 0 && (next == 0 || r.Again < next) {
		next = r.Again
	}
	if next == 0 {
		return j.remove(job)
	}
	nr := jobRecord{Due: next}
	if backoff {
		nr.Hold = next
	}
	return j.put(job, nr, &r)
}

// stats counts the jobs at now.
func (j jobs) stats(now int64) (store.TimetableStats, error) {
	st := store.TimetableStats{Jobs: j.recs.Stats().KeyN}
	err := j.recs.ForEach(func(k, v []byte) error {
		var r jobRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("embedded store: job %q is corrupt: %w", k, err)
		}
		switch {
		case r.Token != "" && r.Until > now:
			st.Leased++
		case r.Due <= now:
			st.Due++
		}
		return nil
	})
	return st, err
}

func checkJob(job string) error {
	if err := checkName("job", job); err != nil {
		return fmt.Errorf("embedded store: %w", err)
	}
	return nil
}

// Schedule implements store.Timetable.
func (t *timetable) Schedule(ctx context.Context, job string, at time.Time, mode store.ScheduleMode) (bool, error) {
	if err := checkJob(job); err != nil {
		return false, err
	}
	if mode > store.Override {
		return false, fmt.Errorf("embedded store: unknown schedule mode %d", mode)
	}
	var existed bool
	err := t.s.write(ctx, func(tx *bolt.Tx) error {
		j, err := t.open(tx)
		if err != nil {
			return err
		}
		existed, err = j.schedule([]byte(job), ms(at), mode)
		return err
	}, nil)
	return existed, err
}

// Due implements store.Timetable.
func (t *timetable) Due(ctx context.Context, job string) (time.Time, bool, error) {
	var r jobRecord
	var ok bool
	err := t.s.view(ctx, func(tx *bolt.Tx) error {
		j, exists := t.read(tx)
		if !exists || checkJob(job) != nil {
			return nil
		}
		var err error
		r, ok, err = j.get([]byte(job))
		return err
	})
	if err != nil || !ok {
		return time.Time{}, false, err
	}
	return time.UnixMilli(r.Due), true, nil
}

// Remove implements store.Timetable.
func (t *timetable) Remove(ctx context.Context, job string) error {
	if checkJob(job) != nil {
		return nil
	}
	return t.s.write(ctx, func(tx *bolt.Tx) error {
		j, err := t.open(tx)
		if err != nil {
			return err
		}
		return j.remove([]byte(job))
	}, nil)
}

// Claim implements store.Timetable.
func (t *timetable) Claim(ctx context.Context, now time.Time, max int, lease time.Duration) ([]store.Claim, error) {
	if max <= 0 {
		return nil, nil
	}
	token := newToken()
	until := ms(now.Add(lease))
	var out []store.Claim
	err := t.s.write(ctx, func(tx *bolt.Tx) error {
		out = out[:0]
		j, err := t.open(tx)
		if err != nil {
			return err
		}
		cs, err := j.claim(ms(now), until, max, token, nil)
		for _, c := range cs {
			out = append(out, store.Claim{Job: string(c.job), Token: token, Until: time.UnixMilli(until), Retaken: c.retaken})
		}
		return err
	}, nil)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Release implements store.Timetable.
func (t *timetable) Release(ctx context.Context, c store.Claim, next time.Time, backoff bool) error {
	if checkJob(c.Job) != nil {
		return fmt.Errorf("job %q: %w", c.Job, store.ErrLeaseLost)
	}
	var n int64
	if !next.IsZero() {
		n = ms(next)
	}
	held := false
	err := t.s.write(ctx, func(tx *bolt.Tx) error {
		j, err := t.open(tx)
		if err != nil {
			return err
		}
		if held, err = j.held([]byte(c.Job), c.Token); err != nil || !held {
			return err
		}
		return j.release([]byte(c.Job), n, backoff)
	}, nil)
	if err != nil {
		return err
	}
	if !held {
		return fmt.Errorf("job %q: %w", c.Job, store.ErrLeaseLost)
	}
	return nil
}

// Stats implements store.Timetable.
func (t *timetable) Stats(ctx context.Context, now time.Time) (store.TimetableStats, error) {
	var st store.TimetableStats
	err := t.s.view(ctx, func(tx *bolt.Tx) error {
		j, ok := t.read(tx)
		if !ok {
			return nil
		}
		var err error
		st, err = j.stats(ms(now))
		return err
	})
	return st, err
}
