package peers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"tally/loadgen"
)

// Etcd counts the way etcd's own docs recommend for read-modify-write: get
// the value and its mod revision, then a transaction that puts value+delta
// only if the revision is unchanged, and on a conflict retries with the
// value the failed transaction read. A batch is one such transaction over
// all its keys (a key appearing several times gets the sum of its deltas:
// etcd refuses a transaction that puts one key twice).
type Etcd struct{ clis []*clientv3.Client }

// maxCASAttempts bounds one increment's retries so a starved client ends
// with an error instead of spinning past the end of a run.
const maxCASAttempts = 10_000

// etcdMaxTxnOps is etcd's default --max-txn-ops.
const etcdMaxTxnOps = 128

// NewEtcd makes one client per endpoint; bench client i uses endpoint
// i % len(endpoints), as tally's clients spread over nodes.
func NewEtcd(endpoints []string) (*Etcd, error) {
	e := &Etcd{}
	for _, ep := range endpoints {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			e.Close()
			return nil, err
		}
		e.clis = append(e.clis, c)
	}
	return e, nil
}

func (e *Etcd) Client(i int) loadgen.Target { return etcdTarget{e.clis[i%len(e.clis)]} }

func (e *Etcd) Close() error {
	var errs []error
	for _, c := range e.clis {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

type etcdTarget struct{ c *clientv3.Client }

// etcdErr: a failed transaction call may have committed (the answer was
// lost), so every error is ambiguous.
func etcdErr(err error) error {
	return &loadgen.Error{Code: "etcd: " + shortErr(err), Maybe: true}
}

func shortErr(err error) string {
	s := err.Error()
	if len(s) > 60 {
		s = s[:60]
	}
	return s
}

func (t etcdTarget) Incr(ctx context.Context, counter string, delta int64) error {
	return t.cas(ctx, []string{counter}, map[string]int64{counter: delta})
}

func (t etcdTarget) IncrBatch(ctx context.Context, ops []loadgen.Op, errs []error) error {
	keys, sum := sumByKey(ops)
	return t.cas(ctx, keys, sum)
}

// sumByKey folds a batch into one delta per key, keys in first-seen order.
func sumByKey(ops []loadgen.Op) ([]string, map[string]int64) {
	var keys []string
	sum := map[string]int64{}
	for _, op := range ops {
		if _, ok := sum[op.Counter]; !ok {
			keys = append(keys, op.Counter)
		}
		sum[op.Counter] += op.Delta
	}
	return keys, sum
}

type kv struct {
	val int64
	rev int64 // mod revision; 0 for a key that does not exist
}

// cas adds delta[k] to every key in one transaction, retrying on conflict.
func (t etcdTarget) cas(ctx context.Context, keys []string, delta map[string]int64) error {
	cur := make([]kv, len(keys))
	gets := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		gets[i] = clientv3.OpGet(k)
	}
	resp, err := t.c.Txn(ctx).Then(gets...).Commit()
	if err != nil {
		return &loadgen.Error{Code: "etcd: " + shortErr(err)} // a read applies nothing
	}
	if err := fill(cur, resp); err != nil {
		return err
	}
	cmps := make([]clientv3.Cmp, len(keys))
	puts := make([]clientv3.Op, len(keys))
	for range maxCASAttempts {
		for i, k := range keys {
			cmps[i] = clientv3.Compare(clientv3.ModRevision(k), "=", cur[i].rev)
			puts[i] = clientv3.OpPut(k, strconv.FormatInt(cur[i].val+delta[k], 10))
		}
		resp, err := t.c.Txn(ctx).If(cmps...).Then(puts...).Else(gets...).Commit()
		if err != nil {
			return etcdErr(err)
		}
		if resp.Succeeded {
			return nil
		}
		if err := fill(cur, resp); err != nil {
			return err
		}
	}
	return &loadgen.Error{Code: "etcd: CAS retries exhausted"}
}

// fill reads the values and revisions of a transaction's get responses.
func fill(cur []kv, resp *clientv3.TxnResponse) error {
	for i, r := range resp.Responses {
		rr := r.GetResponseRange()
		if rr == nil {
			return fmt.Errorf("etcd: op %d answered no range", i)
		}
		cur[i] = kv{}
		if len(rr.Kvs) == 1 {
			v, err := strconv.ParseInt(string(rr.Kvs[0].Value), 10, 64)
			if err != nil {
				return fmt.Errorf("etcd: %s: %w", rr.Kvs[0].Key, err)
			}
			cur[i] = kv{val: v, rev: rr.Kvs[0].ModRevision}
		}
	}
	return nil
}

func (t etcdTarget) Read(ctx context.Context, counters []string) ([]int64, error) {
	out := make([]int64, 0, len(counters))
	for i := 0; i < len(counters); i += etcdMaxTxnOps {
		chunk := counters[i:min(i+etcdMaxTxnOps, len(counters))]
		gets := make([]clientv3.Op, len(chunk))
		for j, k := range chunk {
			gets[j] = clientv3.OpGet(k)
		}
		resp, err := t.c.Txn(ctx).Then(gets...).Commit()
		if err != nil {
			return nil, &loadgen.Error{Code: "etcd: " + shortErr(err)}
		}
		cur := make([]kv, len(chunk))
		if err := fill(cur, resp); err != nil {
			return nil, err
		}
		for _, c := range cur {
			out = append(out, c.val)
		}
	}
	return out, nil
}
