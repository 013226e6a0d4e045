"""Decision ids: unique within a process, across processes and in forked children."""
import os
import re
import subprocess
import sys
import threading

from policy.daemon.decision import new_decision_id

HEX32 = re.compile(r"[0-9a-f]{32}")


def test_ids_are_32_hex_digits_and_unique_across_threads():
    got: list[list[str]] = [[] for _ in range(4)]

    def take(out):
        for _ in range(20_000):
            out.append(new_decision_id())

    threads = [threading.Thread(target=take, args=(out,)) for out in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for out in got for i in out]
    assert all(HEX32.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids) == 80_000


def test_another_process_and_a_forked_child_never_repeat_ours():
    mine = {new_decision_id() for _ in range(1000)}
    code = "from policy.daemon.decision import new_decision_id as n; print(*[n() for _ in range(1000)])"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    theirs = set(other.stdout.split())
    assert len(theirs) == 1000 and not theirs & mine

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the counter state it inherited must not be reused
        os.write(write, " ".join(new_decision_id() for _ in range(1000)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child = set(f.read().split())
    os.waitpid(pid, 0)
    after = {new_decision_id() for _ in range(1000)}
    assert len(child) == 1000 and not child & (mine | after)
