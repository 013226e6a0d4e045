"""Encoding and decoding of decision-log records as the daemon hands them to its log writer process:
orjson (the frames used for plain JSON records) against pickle (the fallback), interleaved.

    PYTHONPATH=. python bench/log_frames_micro.py
"""
import pickle
import random
import statistics
import sys
import time
from pathlib import Path

import orjson
sys.path.insert(0, str(Path(__file__).resolve().parent))
from auditlog_micro import record
rng = random.Random(1); recs = [record(i, rng) for i in range(2000)]
res = {k: ([], []) for k in ("orjson", "pickle")}
codecs = {"orjson": (orjson.dumps, orjson.loads), "pickle": (lambda r: pickle.dumps(r, 5), pickle.loads)}
for rnd in range(7):
    for name, (dumps, loads) in codecs.items():
        t = time.process_time(); bs = [dumps(r) for r in recs]; res[name][0].append((time.process_time() - t) / 2000 * 1e6)
        t = time.process_time()
        for b in bs: loads(b)
        res[name][1].append((time.process_time() - t) / 2000 * 1e6)
for name, (e, d) in res.items():
    print(f"{name}: encode median {statistics.median(e):.1f} us, decode median {statistics.median(d):.1f} us (7 interleaved rounds of 2,000 records)")
