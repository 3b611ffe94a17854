"""The startup heap is frozen out of the cyclic collector."""

import gc
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


@pytest.mark.usefixtures("unfrozen_after")
def test_a_full_collection_no_longer_walks_what_startup_made() -> None:
    startup = [[i] for i in range(50_000)]  # lists are always tracked, as an app's objects
    assert walked(startup[0])
    walked_before = len(gc.get_objects())
    freeze_startup_objects()
    assert not walked(startup[0])
    assert len(gc.get_objects()) < walked_before - len(startup)
    made_later = [[i] for i in range(1000)]
    assert walked(made_later[0])  # what comes after is collected as ever
    assert startup[-1] == [49_999]  # kept, not freed
