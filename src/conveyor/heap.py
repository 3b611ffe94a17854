"""The heap of a long-running process: what it builds at startup is kept for its life."""

import gc


def freeze_startup_objects() -> None:
    """Put every object made so far (the modules, the app, the config: about 150,000 in
    `conveyor serve`) out of the cyclic collector's reach. They live as long as the
    process, yet every full collection walked them all: about 150 ms with the GIL held
    on a slow core, once every few thousand lookups. Objects are still freed when their
    last reference goes; only a cycle among frozen objects would never be collected."""
    gc.collect()
    gc.freeze()
