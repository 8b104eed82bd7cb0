// Package pgsync keeps a PostgreSQL table of tally's counters in step with
// the cluster: it follows the changefeed and applies each step, with the
// cursor that step brings it to, in one transaction. A crash of either
// side loses nothing and applies nothing twice: on restart it resumes
// from the cursor the table's own transaction stored.
package pgsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tally/client"
)

// Feed is the part of tally's client the sync uses.
type Feed interface {
	Changes(ctx context.Context, cursor string, fn func([]client.ChangeEvent, string) error) error
	Dump(ctx context.Context) ([]client.DumpedCounter, string, error)
}

// Config says where to sync to.
type Config struct {
	// Table is the table of (name text primary key, value bigint): one row
	// per counter whose value is not 0, as tally holds them. Beside it,
	// TABLE_parts holds each counter part's value (a split counter has
	// several) and TABLE_cursor the changefeed cursor the table is at.
	Table  string
	Logger *slog.Logger
	// CursorEvery bounds how often a step that changed no counter (it
	// only moved the cursor) is written; 0: 1 s.
	CursorEvery time.Duration
}

var tableName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,40}$`)

// Syncer runs the sync.
type Syncer struct {
	db   *pgxpool.Pool
	feed Feed
	cfg  Config
	log  *slog.Logger
	// quoted names of the three tables
	table, parts, cursor string
}

// New checks cfg and returns a Syncer over db and feed.
func New(db *pgxpool.Pool, feed Feed, cfg Config) (*Syncer, error) {
	if !tableName.MatchString(cfg.Table) {
		return nil, fmt.Errorf("--table %q: want a lowercase SQL name (letters, digits, _; at most 41)", cfg.Table)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CursorEvery <= 0 {
		cfg.CursorEvery = time.Second
	}
	q := func(s string) string { return pgx.Identifier{s}.Sanitize() }
	return &Syncer{db: db, feed: feed, cfg: cfg, log: cfg.Logger,
		table: q(cfg.Table), parts: q(cfg.Table + "_parts"), cursor: q(cfg.Table + "_cursor")}, nil
}

// Setup creates the tables if they are missing.
func (s *Syncer) Setup(ctx context.Context) error {
	_, err := s.db.Exec(ctx, fmt.Sprintf(`
CREATE TABLE IF NOT EXISTS %s (name text PRIMARY KEY, value bigint NOT NULL);
CREATE TABLE IF NOT EXISTS %s (name text NOT NULL, part int NOT NULL, value bigint NOT NULL, PRIMARY KEY (name, part));
CREATE TABLE IF NOT EXISTS %s (id int PRIMARY KEY CHECK (id = 1), cursor text NOT NULL, updated timestamptz NOT NULL DEFAULT now());
`, s.table, s.parts, s.cursor))
	return err
}

// Cursor returns the cursor the table is at, and false if it has none (it
// was never loaded).
func (s *Syncer) Cursor(ctx context.Context) (string, bool, error) {
	var c string
	err := s.db.QueryRow(ctx, fmt.Sprintf(`SELECT cursor FROM %s WHERE id = 1`, s.cursor)).Scan(&c)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	return c, err == nil, err
}

// Run syncs until ctx ends: it loads a dump when the table has no cursor
// (or the cluster no longer holds the changes after it), then follows the
// changes. Failures of tally or PostgreSQL (down, restarting, a leader
// election the client gave up on) are logged and retried with backoff;
// what the table holds stays at its cursor meanwhile.
func (s *Syncer) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.runOnce(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		s.log.Warn("sync interrupted; retrying", "err", err, "in_ms", backoff.Milliseconds())
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (s *Syncer) runOnce(ctx context.Context) error {
	if err := s.Setup(ctx); err != nil {
		return fmt.Errorf("create the tables: %w", err)
	}
	for {
		cur, ok, err := s.Cursor(ctx)
		if err != nil {
			return fmt.Errorf("read the cursor: %w", err)
		}
		if !ok {
			if err := s.resync(ctx); err != nil {
				return err
			}
			continue
		}
		s.log.Info("following changes", "cursor", cur)
		err = s.follow(ctx, cur)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, client.ErrCursorExpired):
			s.log.Warn("the cluster no longer holds the changes after the table's cursor; reloading from a dump", "cursor", cur, "err", err)
			if err := s.resync(ctx); err != nil {
				return err
			}
		case isBadCursor(err):
			// The table's cursor is not this cluster's (another shard
			// count): its contents are not this cluster's either.
			s.log.Warn("the cluster refuses the table's cursor; reloading from a dump", "cursor", cur, "err", err)
			if err := s.resync(ctx); err != nil {
				return err
			}
		case err == nil:
			return errors.New("the changefeed ended")
		default:
			return err
		}
	}
}

func isBadCursor(err error) bool {
	var ae *client.APIError
	return errors.As(err, &ae) && ae.Code == "bad_cursor"
}

// resync replaces the tables' contents with a dump, and its cursor, in
// one transaction.
func (s *Syncer) resync(ctx context.Context) error {
	start := time.Now()
	dump, cursor, err := s.feed.Dump(ctx)
	if err != nil {
		return fmt.Errorf("dump: %w", err)
	}
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf(`TRUNCATE %s, %s`, s.table, s.parts)); err != nil {
			return err
		}
		rows := make([][]any, len(dump))
		for i, d := range dump {
			rows[i] = []any{d.Name, d.Part, d.Value}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{s.cfg.Table + "_parts"}, []string{"name", "part", "value"}, pgx.CopyFromRows(rows)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (name, value) SELECT name, sum(value) FROM %s GROUP BY name HAVING sum(value) <> 0`, s.table, s.parts)); err != nil {
			return err
		}
		return s.saveCursor(ctx, tx, cursor)
	})
	if err != nil {
		return fmt.Errorf("load the dump: %w", err)
	}
	s.log.Info("loaded a dump", "parts", len(dump), "cursor", cursor, "ms", time.Since(start).Milliseconds())
	return nil
}

func (s *Syncer) saveCursor(ctx context.Context, tx pgx.Tx, cursor string) error {
	_, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (id, cursor) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET cursor = EXCLUDED.cursor, updated = now()`, s.cursor), cursor)
	return err
}

// step is a part of the feed to apply: its events and the cursor after.
type step struct {
	events []client.ChangeEvent
	cursor string
}

// follow applies the changes after cursor. The feed is read on while a
// transaction commits, and the steps that arrived meanwhile go into the
// next transaction together (with the last one's cursor), so a sink that
// falls behind catches up in fewer, larger commits.
func (s *Syncer) follow(ctx context.Context, cursor string) error {
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	steps := make(chan step, 256)
	failed := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		failed <- s.commitLoop(fctx, steps)
		cancel()
	}()
	err := s.feed.Changes(fctx, cursor, func(evs []client.ChangeEvent, next string) error {
		select {
		case steps <- step{evs, next}:
			return nil
		case <-fctx.Done():
			return fctx.Err()
		}
	})
	close(steps)
	<-done
	if cerr := <-failed; cerr != nil {
		return cerr
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// commitLoop applies the steps as they come, merging the queued ones.
func (s *Syncer) commitLoop(ctx context.Context, steps <-chan step) error {
	var lastWrite time.Time
	var pending []client.ChangeEvent
	for st := range steps {
		pending = append(pending[:0], st.events...)
		cursor := st.cursor
	drain:
		for len(pending) < 1<<16 {
			select {
			case more, ok := <-steps:
				if !ok {
					break drain
				}
				pending = append(pending, more.events...)
				cursor = more.cursor
			default:
				break drain
			}
		}
		if len(pending) == 0 && time.Since(lastWrite) < s.cfg.CursorEvery {
			// Nothing changed: resuming from the older cursor misses nothing.
			continue
		}
		if err := s.apply(ctx, pending, cursor); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("apply changes up to %s: %w", cursor, err)
		}
		lastWrite = time.Now()
	}
	return nil
}

// apply writes one transaction: each part's latest value, each touched
// counter's sum, and the cursor. Whatever the number of changes, it is a
// handful of statements over arrays.
func (s *Syncer) apply(ctx context.Context, evs []client.ChangeEvent, cursor string) error {
	type key struct {
		name string
		part int
	}
	latest := map[key]int64{}
	var order []key
	for _, ev := range evs {
		for _, c := range ev.Changes {
			k := key{c.Name, c.Part}
			if _, ok := latest[k]; !ok {
				order = append(order, k)
			}
			latest[k] = c.Value
		}
	}
	var setN, dropN []string
	var setP, dropP []int32
	var setV []int64
	touched := map[string]bool{}
	var names []string
	for _, k := range order {
		if v := latest[k]; v != 0 {
			setN, setP, setV = append(setN, k.name), append(setP, int32(k.part)), append(setV, v)
		} else {
			dropN, dropP = append(dropN, k.name), append(dropP, int32(k.part))
		}
		if !touched[k.name] {
			touched[k.name] = true
			names = append(names, k.name)
		}
	}
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		if len(setN) > 0 {
			b.Queue(fmt.Sprintf(`INSERT INTO %s (name, part, value) SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[])
ON CONFLICT (name, part) DO UPDATE SET value = EXCLUDED.value`, s.parts), setN, setP, setV)
		}
		if len(dropN) > 0 {
			b.Queue(fmt.Sprintf(`DELETE FROM %s p USING unnest($1::text[], $2::int[]) AS d(name, part) WHERE p.name = d.name AND p.part = d.part`, s.parts), dropN, dropP)
		}
		if len(names) > 0 {
			b.Queue(fmt.Sprintf(`DELETE FROM %s WHERE name = ANY($1)`, s.table), names)
			b.Queue(fmt.Sprintf(`INSERT INTO %s (name, value) SELECT name, sum(value) FROM %s WHERE name = ANY($1) GROUP BY name HAVING sum(value) <> 0`, s.table, s.parts), names)
		}
		b.Queue(fmt.Sprintf(`INSERT INTO %s (id, cursor) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET cursor = EXCLUDED.cursor, updated = now()`, s.cursor), cursor)
		return tx.SendBatch(ctx, b).Close()
	})
}
