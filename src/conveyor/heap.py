"""The heap of a long-running process: what it builds at startup is kept for its life."""

import gc


def freeze_startup_objects() -> None:
    """Put every object made so far (the modules, the config, the container, the app:
    about 150,000 in `conveyor serve`) out of the cyclic collector's reach. Most live as
    long as the process, yet every full collection walked them all: about 150 ms with
    the GIL held on a slow core, once every few thousand lookups (docs/adr/0022).
    Objects are still freed when their last reference goes. A cycle through any frozen
    object is never collected, nor what only that cycle holds: each frozen object can
    leak at most once."""
    gc.collect()
    gc.freeze()
