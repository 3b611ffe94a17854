"""The startup heap is frozen out of the cyclic collector."""

import gc
import weakref
from collections.abc import Iterator

import pytest

from conveyor.heap import freeze_startup_objects


@pytest.fixture
def unfrozen_after() -> Iterator[None]:
    yield
    gc.unfreeze()


def walked(obj: object) -> bool:
    """Whether a collection looks at `obj` (every generation but the frozen one)."""
    return any(o is obj for o in gc.get_objects())


class Part:
    """An object the collector tracks, as most of an app's are, that a weakref can see."""


@pytest.mark.usefixtures("unfrozen_after")
def test_a_full_collection_no_longer_walks_what_startup_made() -> None:
    startup = [Part() for _ in range(50_000)]
    assert walked(startup[0])
    walked_before = len(gc.get_objects())
    freeze_startup_objects()
    assert not walked(startup[0])
    assert len(gc.get_objects()) < walked_before - len(startup)
    made_later = Part()
    assert walked(made_later)  # what comes after is collected as ever
    # A frozen object is still freed when its last reference goes.
    gone = weakref.ref(startup[0])
    del startup[0]
    assert gone() is None
