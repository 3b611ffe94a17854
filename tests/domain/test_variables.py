"""The reserved build-variable names, and the docs that list them."""

from pathlib import Path

from conveyor.domain.variables import (
    RESERVED_NAMES,
    RESERVED_PREFIXES,
    variable_name_problem,
    variable_value_problem,
)

SECURITY_MD = Path(__file__).parents[2] / "docs" / "security.md"


def test_docs_security_lists_every_reserved_name_and_prefix() -> None:
    text = SECURITY_MD.read_text()
    missing = [n for n in RESERVED_NAMES if f"`{n}`" not in text]
    missing += [p for p in RESERVED_PREFIXES if f"`{p}*`" not in text]
    assert missing == []


def test_ordinary_names_and_values_are_fine() -> None:
    assert variable_name_problem("FLAVOUR") is None
    assert variable_name_problem("_private2") is None
    assert variable_value_problem("a b\tc — é") is None
    assert variable_value_problem("x" * 4096) is None


def test_prefixes_and_shapes_are_refused() -> None:
    assert variable_name_problem("LD_AUDIT") == (
        "is reserved: the dynamic loader loads code by them (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT)"
    )
    assert variable_name_problem("PYTHON_GIL") is not None
    assert variable_name_problem("A=B") is not None
    assert variable_value_problem("x" * 4097) == "must be at most 4096 bytes of UTF-8, not 4097"
    assert variable_value_problem("\ud800") is not None
