#!/usr/bin/env python3
"""The causalkv benchmark: one command, run on one machine.

    python3 bench/run.py            # the full run (~25-30 min), writes BENCHMARKS.md
    python3 bench/run.py --quick    # a few minutes, 100k keys (1M for the big join and the
                                    # durable store), BENCHMARKS.md too
    python3 bench/run.py --smoke    # seconds; CI; writes to a temp dir

What it measures, with the same load generator settings for every HTTP system
(wrk, 2 threads, 32 connections, 10 s per figure, 10,000 keys of 100-byte
values, the median of --repeat runs):

1. causalkv, three replicas on loopback: GET, PUT and a 90/10 GET/PUT mix
   against one replica and spread over all three, passing a real causal
   context (from real PUTs: the X-Causal-Metadata header for GETs, the body for
   PUTs); p50/p99 latency; server CPU; replication lag measured by probes
   while a background PUT load runs at about half the maximum PUT rate.
2. The HTTP ceiling: examples/http_ceiling.rs, a minimal actix-web server
   answering the same routes with a fixed body, same worker count. Its runs
   alternate with causalkv's one-replica runs (ceiling, causalkv, ceiling,
   ...), so that drift in the machine's speed does not skew their ratio.
3. etcd (Debian etcd-server), three members on loopback, through its JSON
   gateway, with fsync and with --unsafe-no-fsync.
4. Redis (Debian redis-server), a master and two replicas, redis-benchmark
   SET/GET with the same key count and value size (a different protocol: a
   reference, not a peer). Its runs alternate with causalkv's one-replica
   runs, like the ceiling's.
5. Scale: RSS per key after loading up to 1,000,000 keys (causalkv and
   Redis); GET/PUT throughput and RSS at 10k, 100k and 1M keys; the time for a
   fresh fourth replica to join and hold every key while the cluster keeps
   serving; 3 versus 5 replicas.
6. The join of a large store (bench/scale_join.py): three replicas loaded
   with 10,000,000 keys (--join-keys; quick 1M, smoke 5,000), then a fresh
   fourth replica joins while a client keeps sending requests: the time until
   it holds every key and is ready, the peak RSS of the member it copies from
   and of the joiner, and what the cluster served meanwhile.
7. Durability (bench/causalbench/durable.py): PUT at one of three replicas
   with DATA_DIR under DURABILITY=fsync and os against the same replicas in
   memory, and GET with DATA_DIR against the HTTP ceiling, their runs
   alternating; a durable replica holding --durable-keys keys (1,000,000;
   smoke 2,000) killed with SIGKILL and restarted on its data: the time to
   GET /ready and to every key; its disk (du of DATA_DIR) and RSS per key,
   beside Redis's (append-only file, RDB dump, RSS) and etcd's (data dir,
   RSS) holding the same keys (etcd: 100,000 with --quick).
8. Shards (bench/causalbench/shards.py): six nodes started with
   SHARD_COUNT=2 (two shards of three) beside three unsharded replicas.
   GET and PUT over the keys of one shard, sent to a node of that shard
   (owner) and to a node of the other (every request relayed), and the
   same keys at an unsharded replica, their runs alternating; p50/p99.
   --scale-keys keys (1,000,000; quick 100,000; smoke 2,000) in the
   unsharded store and in the 2-shard store: keys and RSS per node. Then
   that store resharded to three shards while a client keeps sending GETs
   and PUTs: the reshard's duration, the requests that failed meanwhile,
   and the shards' key counts afterwards.
9. Conditional writes (bench/causalbench/conditional.py): three replicas
   loaded with --keys keys, then PUT at one of them, plain and with
   If-Match: * (write only if the key exists: every key does), their runs
   alternating; p50/p99, CPU per request, and the conditional PUTs that
   answered other than 2xx (a 412 is an error there).
10. Tables (bench/causalbench/keyspaces.py): three replicas, then
    --table-count empty tables (10,000; quick 2,000; smoke 100) created at
    one of them: the growth of each replica's RSS per table once every
    replica lists them (RSS read until two samples agree). --scale-keys
    keys loaded into the default table, into a table and into a table with
    siblings of three fresh replicas each: RSS per key, and the table's
    over the default table's. GET and PUT at one replica over --keys keys
    in a table against the same keys in the default table, runs
    alternating. Information: no target.

It installs what it lacks with apt-get (a part whose tool cannot be installed
is skipped with a note), builds causalkv and the ceiling with cargo, starts
every server on free loopback ports (logs in a temp dir) and stops exactly the
processes it started. It prints the table of ratios against the targets and
writes BENCHMARKS.md, BENCHMARKS.svg (the chart) and BENCHMARKS.json (every
figure, to compare runs or write the report again with --report-from) at the
repository root, or into --out DIR. --rev REV benchmarks a commit instead of
the working tree.

Python 3 and two libraries it installs itself when missing (python3-redis
and python3-matplotlib with apt-get, or pip --user when this python3 is not
Debian's): redis-py speaks to Redis, matplotlib draws the chart. Without
them the Redis part, or the chart, is skipped with a note.

The code lives in bench/causalbench/ (its __init__ says what is where);
this file only starts it. bench/scale_join.py measures the joins.
"""

import sys

from causalbench.cli import main  # bench/causalbench/ (this script's directory is on sys.path)

if __name__ == "__main__":
    sys.exit(main())
