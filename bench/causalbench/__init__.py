"""The causalkv benchmark, run by bench/run.py (see its docstring for what
it measures and how to run it). One module, one job:

- cli       the command line (argparse: modes, defaults) and main: a run or
            a report written again from BENCHMARKS.json (--report-from)
- runner    one run: install, build, the parts in order, each figure the
            median of its runs under a CPU meter on a quiet machine
- parts     the parts comparing systems: HTTP ceiling, causalkv, etcd, Redis
- lag       replication lag probes under a background PUT load
- conditional PUT with If-Match: * over keys that exist against plain PUT,
            runs alternating; the answers other than 2xx
- durable   DATA_DIR (fsync, os) against memory and the ceiling, a restart
            after SIGKILL, bytes per key on disk beside Redis and etcd
- scale     RSS and throughput by key count, joins, 3 against 5 replicas
- shards    SHARD_COUNT: a request at its key's shard against one relayed
            from another shard and the unsharded store; keys and RSS per
            node in 2 shards against unsharded; a reshard under load
- keyspaces tables (README "Tables and siblings"): RSS per empty table,
            RSS per key in the default table, a table and a table with
            siblings, GET/PUT in a table against the default table
- servers   starting causalkv (replicas, or nodes in shards), the ceiling,
            etcd and Redis on loopback and waiting until they serve
- procs     the processes a run started, stopped exactly, by PID; free ports
- load      wrk (with bench/*.lua), the built-in Python generator,
            redis-benchmark, and parsing what they print; etcd loaded in
            transactions
- client    HTTP to the servers (one request, or a persistent connection)
- measures  CPU and RSS from /proc; the CPU meter of one measurement;
            the disk a directory takes (du)
- install   apt-get of missing tools; redis-py and matplotlib (apt or pip)
- build     cargo build of the working tree or of a --rev
- machine   the machine and the versions the report names
- tables    the figures as tables: targets (PASS/FAIL), details, scale,
            conditional writes, durability, shards
- keyspace_report  the tables part's rows, tables and BENCHMARKS.md section
- report    BENCHMARKS.md, BENCHMARKS.json and the printed tables
- chart     BENCHMARKS.svg with matplotlib
- base      shared: paths, log, ToolError, medians, key names, commands

bench/scale_join.py (outside the package, named in the report) measures a
fresh replica's join; scale and tables use it.
"""
