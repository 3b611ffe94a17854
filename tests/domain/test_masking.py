"""The masker: no chunking of the stream and no window of a stored log shows a secret."""

from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.domain.masking import (
    MASK,
    SecretPatterns,
    StreamMasker,
    mask_window,
)

SECRETS = ["hunter2-secret", "abcabcabc", "line-one-of-key\n  line-two-of-key\nshort\n"]
PATTERNS = SecretPatterns(SECRETS)


def reference(data: bytes, patterns: SecretPatterns) -> bytes:
    """Byte by byte: covered bytes in runs, each run one MASK."""
    covered = [False] * len(data)
    for p in patterns.patterns:
        for i in range(len(data) - len(p) + 1):
            if data[i : i + len(p)] == p:
                covered[i : i + len(p)] = [True] * len(p)
    out = bytearray()
    for i, byte in enumerate(data):
        if not covered[i]:
            out.append(byte)
        elif i == 0 or not covered[i - 1]:
            out += MASK
    return bytes(out)


def streamed(data: bytes, cuts: list[int], patterns: SecretPatterns = PATTERNS) -> bytes:
    masker = StreamMasker(patterns)
    out, at = b"", 0
    for cut in sorted(cuts):
        out += masker.feed(data[at:cut])
        at = cut
    return out + masker.feed(data[at:]) + masker.flush()


def windowed(data: bytes, cuts: list[int], complete: bool = True) -> bytes:
    """The log API: each window read with the context the masker needs around it."""
    out, lo = b"", 0
    for hi in [*sorted(set(cuts)), len(data)]:
        if hi <= lo:
            continue
        start = max(0, lo - PATTERNS.longest)
        ext = data[start : hi + PATTERNS.longest - 1]
        part, next_lo = mask_window(PATTERNS, ext, start, lo, hi, complete)
        assert next_lo == hi
        out += part
        lo = hi
    return out


pieces = st.lists(
    st.one_of(
        st.sampled_from([s.encode() for s in SECRETS]),
        st.sampled_from([b"line-one-of-key", b"line-two-of-key", b"abc", b"hunter2", b"\n"]),
        st.binary(max_size=20),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(pieces, st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_any_chunking_masks_as_the_byte_by_byte_reference(
    parts: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(parts)
    cuts = [c for c in cuts if c <= len(data)]
    expected = reference(data, PATTERNS)
    assert streamed(data, cuts) == expected
    assert windowed(data, cuts) == expected
    for p in PATTERNS.patterns:
        assert p not in expected


def test_a_secret_split_across_reads_is_masked() -> None:
    data = b"x" * 65530 + b"token: hunter2-secret\n"
    for cut in range(65530, len(data)):
        assert streamed(data, [cut]) == b"x" * 65530 + b"token: ***\n"


def test_a_multi_line_secret_is_masked_whole_and_line_by_line() -> None:
    key = SECRETS[2].encode()
    assert streamed(b"[" + key + b"]", []) == b"[***]"
    # Printed one line at a time, or indented differently, each long line is still masked.
    assert streamed(b"> line-two-of-key <\n", [7]) == b"> *** <\n"
    # A line too short to mean anything alone is left as it is.
    assert streamed(b"short\n", []) == b"short\n"


def test_overlapping_occurrences_leave_no_part_of_the_secret() -> None:
    assert streamed(b"abcabcabcabc!", [4]) == b"***!"


def test_a_stream_holds_back_only_what_could_still_become_a_secret() -> None:
    masker = StreamMasker(PATTERNS)
    assert masker.feed(b"progress 50%\n") == b"progress 50%\n"
    assert masker.feed(b"token: hunt") == b"token: "
    assert masker.feed(b"er2-secret!") == b"***!"
    assert masker.feed(b"token: hunt") == b"token: "
    assert masker.flush() == b"hunt"


def test_a_growing_log_is_served_up_to_a_possible_secret_and_then_masked() -> None:
    data = b"token: hunter2-se"
    part, next_offset = mask_window(PATTERNS, data, 0, 0, len(data), complete=False)
    assert (part, next_offset) == (b"token: ", 7)
    data += b"cret\n"
    part, next_offset = mask_window(PATTERNS, data, 0, 7, len(data), complete=True)
    assert (part, next_offset) == (b"***\n", len(data))


def test_short_values_are_never_patterns() -> None:
    assert not SecretPatterns(["", "abc", "1234567"])
    assert SecretPatterns(["12345678"]).patterns == (b"12345678",)
