package peers

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"tally/loadgen"
)

// Postgres counts with UPDATE counters SET c = c + $1: the row lock makes
// each increment atomic. A batch is one pgx batch of UPDATEs, which the
// server runs as one implicit transaction (one commit, one WAL flush) in
// one round trip.
type Postgres struct{ pool *pgxpool.Pool }

const (
	pgIncr = `UPDATE counters SET c = c + $1 WHERE name = $2`
	pgRead = `SELECT name, c FROM counters WHERE name = ANY($1)`
)

// NewPostgres connects a pool of `clients` connections to dsn.
func NewPostgres(ctx context.Context, dsn string, clients int) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns, cfg.MinConns = int32(clients), int32(clients)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &Postgres{pool: pool}, nil
}

// Setup creates the table and a row for every counter: UPDATE counts only
// rows that exist.
func (p *Postgres) Setup(ctx context.Context, names []string) error {
	if _, err := p.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS counters (name text PRIMARY KEY, c bigint NOT NULL DEFAULT 0)`); err != nil {
		return err
	}
	_, err := p.pool.Exec(ctx, `INSERT INTO counters (name) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, names)
	return err
}

func (p *Postgres) Client(int) loadgen.Target { return pgTarget{p.pool} }

func (p *Postgres) Close() error { p.pool.Close(); return nil }

type pgTarget struct{ pool *pgxpool.Pool }

// pgErr: an error the server reported before committing applied nothing;
// a lost connection or a failed commit may have.
func pgErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return &loadgen.Error{Code: "postgres " + pe.Code}
	}
	return &loadgen.Error{Code: "postgres transport", Maybe: true}
}

var errNoRow = &loadgen.Error{Code: "postgres: no such counter row"}

func (t pgTarget) Incr(ctx context.Context, counter string, delta int64) error {
	tag, err := t.pool.Exec(ctx, pgIncr, delta, counter)
	if err != nil {
		return pgErr(err)
	}
	if tag.RowsAffected() != 1 {
		return errNoRow
	}
	return nil
}

func (t pgTarget) IncrBatch(ctx context.Context, ops []loadgen.Op, errs []error) error {
	// Lock rows in one order in every transaction, or two batches that
	// touch the same counters in opposite orders deadlock.
	sorted := slices.Clone(ops)
	slices.SortFunc(sorted, func(a, b loadgen.Op) int { return strings.Compare(a.Counter, b.Counter) })
	b := &pgx.Batch{}
	for _, op := range sorted {
		b.Queue(pgIncr, op.Delta, op.Counter)
	}
	br := t.pool.SendBatch(ctx, b)
	for range sorted {
		tag, err := br.Exec()
		if err != nil {
			br.Close()
			return pgErr(err) // the transaction rolled back, or the connection broke
		}
		if tag.RowsAffected() != 1 {
			br.Close()
			return errNoRow
		}
	}
	// Close reads the commit's answer.
	if err := br.Close(); err != nil {
		return pgErr(err)
	}
	return nil
}

func (t pgTarget) Read(ctx context.Context, counters []string) ([]int64, error) {
	rows, err := t.pool.Query(ctx, pgRead, counters)
	if err != nil {
		return nil, pgErr(err)
	}
	vals := map[string]int64{}
	for rows.Next() {
		var n string
		var v int64
		if err := rows.Scan(&n, &v); err != nil {
			rows.Close()
			return nil, err
		}
		vals[n] = v
	}
	if err := rows.Err(); err != nil {
		return nil, pgErr(err)
	}
	out := make([]int64, len(counters))
	for i, c := range counters {
		out[i] = vals[c]
	}
	return out, nil
}
