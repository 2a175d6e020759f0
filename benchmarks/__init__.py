"""snworker's benchmark suite: what the process boundary costs, as ratios from one run.

    python -m benchmarks [--quick] [--json PATH]

Method. The stub instance runs in its own process (`StubServiceNow.start_process()`), so neither
side of a comparison shares its interpreter with the server. Every figure compares a reference
(A) with snworker (B) measured in the same run: A and B alternate in blocks (A/B, then B/A, ten
blocks in a full run), each block a fixed number of operations. Latencies of all blocks are
pooled into a median and a p99 (nearest rank); throughput and CPU per operation are medians of
per-block values. CPU is `time.process_time()` of this process, which holds the caller threads
and snworker's reader thread but neither the worker nor the stub.

snworker runs with both framings of its pipe (`snworker.pipes`: fd, the POSIX default, and
conn, Windows' path; conn alone on Windows), through one connection each, `SNWORKER_IO` set
around its `connect()`. In sections 1 to 4 every framing is a side of the same rotation as the
reference (A, fd, conn; the order rotates so that each side takes each place in turn), and each
is compared with the same A blocks.

Sections (module `benchmarks.sections`):

1. floor: a 200-byte round trip over a stdlib `multiprocessing.Pipe` to an echoing child,
   against snworker's cheapest round trip, a request the worker refuses before any network I/O.
2. small GET: one record by sys_id, in-process `requests.Session` against `execute_api_request`;
   latency, overhead, and the parent's CPU per request.
3. caller threads 1, 4, 16: throughput, one reference session per thread.
4. response sizes 1 KB .. 8 MB: latency and MB/s, JSON parsed on both sides.
5. start-up (`benchmarks.startup`): `connect()` to ready against a bare spawn that imports
   requests; RSS of the worker that holds the tokens and of its supervisor (Linux).
6. refresh storm: 32 threads meet a token the stub expired; refresh grants and p99 latency.
7. redaction (`benchmarks.redaction`, run before 5 and 6): `Redactor.body` in this process on
   the small and the 1 MB bodies, with a connected worker's secrets, interleaved with snworker
   GETs of the same body; its cost as a share of that GET.
8. agent (`benchmarks.agent`): a client of a shared agent against a worker of its own.
9. stub (`benchmarks.stub`): the stub's own speed, in this process. A list of 1,000 records
   against the same bytes downloaded as an attachment; a fresh stub per test (start, one
   request, stop) against a shared stub reset between tests.

The reference authorizes itself with its own code flow (`benchmarks.baseline`). Everything runs
on 127.0.0.1, bounded in count and time, and every process started here is stopped on the way
out. This package is imported by spawned children, so it imports nothing at its top.
"""
