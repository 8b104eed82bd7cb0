package transport

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchTransports builds, for each of shards, a sender transport on one
// node and an acknowledging follower on another, either per-shard
// NetworkTransports over the Mux (what shard.Open used before) or one
// RaftNet per node.
func benchTransports(b *testing.B, kind string, shards int) (senders []raft.Transport, target raft.ServerAddress) {
	ma, err := listen("127.0.0.1:0", "", false, slog.New(slog.DiscardHandler), defaultHeaderTimeout)
	if err != nil {
		b.Fatal(err)
	}
	mb, err := listen("127.0.0.1:0", "", false, slog.New(slog.DiscardHandler), defaultHeaderTimeout)
	if err != nil {
		b.Fatal(err)
	}
	var closers []io.Closer
	var wg sync.WaitGroup
	stop := make(chan struct{})
	b.Cleanup(func() {
		close(stop)
		wg.Wait()
		for _, c := range closers {
			c.Close()
		}
		ma.Close()
		mb.Close()
	})
	quiet := hclog.New(&hclog.LoggerOptions{Level: hclog.Error, Output: io.Discard})
	var rnA, rnB *RaftNet
	if kind == "raftnet" {
		rnA, rnB = NewRaftNet(ma, RaftNetConfig{}), NewRaftNet(mb, RaftNetConfig{})
		closers = append(closers, rnA, rnB)
	}
	for s := range uint32(shards) {
		var send, recv raft.Transport
		switch kind {
		case "net":
			nt := func(m *Mux) *raft.NetworkTransport {
				t := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: m.StreamLayer(s), MaxPool: 3, Timeout: 5 * time.Second, Logger: quiet, MaxRPCsInFlight: 1})
				closers = append(closers, t)
				return t
			}
			send, recv = nt(ma), nt(mb)
		case "raftnet":
			send, recv = rnA.Shard(s), rnB.Shard(s)
		}
		wg.Go(func() {
			for {
				select {
				case rpc := <-recv.Consumer():
					ackAppends(rpc)
				case <-stop:
					return
				}
			}
		})
		senders = append(senders, send)
	}
	return senders, raft.ServerAddress(mb.Addr())
}

// BenchmarkAppendEntriesRoundTrip compares one AppendEntries round trip
// (leader and follower in this process, on loopback) over the per-shard
// NetworkTransport and over RaftNet: one shard sending alone, and 8 shards
// sending to the same peer at once. cpu-ns/op is the process's CPU time
// (both ends) per round trip.
func BenchmarkAppendEntriesRoundTrip(b *testing.B) {
	for _, shards := range []int{1, 8} {
		for _, entries := range []int{1, 16} {
			for _, kind := range []string{"net", "raftnet"} {
				b.Run(fmt.Sprintf("%s/shards=%d/entries=%d", kind, shards, entries), func(b *testing.B) {
					senders, target := benchTransports(b, kind, shards)
					req := appendReq(100, entries)
					for _, e := range req.Entries {
						e.Data = make([]byte, 200)
						e.AppendedAt = time.Now()
					}
					// Warm up: connections dialed, pools filled.
					for _, s := range senders {
						var r raft.AppendEntriesResponse
						if err := s.AppendEntries("b", target, req, &r); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportAllocs()
					b.ResetTimer()
					cpu0 := cpuTime(b)
					var wg sync.WaitGroup
					per := b.N / shards
					for _, s := range senders {
						wg.Go(func() {
							var r raft.AppendEntriesResponse
							for range per {
								if err := s.AppendEntries("b", target, req, &r); err != nil {
									b.Error(err)
									return
								}
							}
						})
					}
					wg.Wait()
					b.StopTimer()
					if ops := per * shards; ops > 0 {
						b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(ops), "cpu-ns/op")
					}
				})
			}
		}
	}
}
