"""The daemon freezes its heap after each rules load (policy.daemon.server.freeze_heap)."""
import gc
import weakref

from policy.daemon.server import freeze_heap


class _Node:
    pass


def test_loaded_objects_leave_the_collector_and_a_reload_frees_retired_cycles():
    try:
        node = _Node()
        node.me = node                    # a cycle: only the cyclic collector can free it
        ref = weakref.ref(node)
        freeze_heap()                    # a load: node is part of what gets frozen
        assert gc.get_freeze_count() > 0
        assert not any(o is node for o in gc.get_objects())
        del node                          # the version retires
        gc.collect()
        assert ref() is not None          # frozen: full collections no longer walk it
        freeze_heap()                    # the next reload thaws, collects, freezes again
        assert ref() is None
    finally:
        gc.unfreeze()
