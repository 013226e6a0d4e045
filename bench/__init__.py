"""Benchmarks of the policy daemon against the performance targets of issues 2 and 3.

`python -m bench` runs the reference benchmarks and prints one table (see BENCHMARKS.md):
  workload.py        the deterministic reference workload (rules folder + message stream)
  pipeline_bench.py  Pipeline.evaluate in process; daemon start time and memory
  grpc_bench.py      the daemon over gRPC on loopback, beside a bare grpcio echo server
The *_micro.py scripts measure single parts (facts, counters, decision log) on their own.
"""
