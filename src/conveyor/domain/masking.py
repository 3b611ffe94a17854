"""Masking secrets in job logs, wherever they fall in the byte stream.

Every byte that belongs to an occurrence of a secret is covered; each run of covered
bytes becomes `***`. A secret is masked whole, and so is each line of a multi-line
secret that is long enough to mean something on its own. Whether a byte is covered
depends only on the `longest - 1` bytes on either side of it, which is what lets the
same rule run on a stream (`StreamMasker`, while a job writes its log: it holds back
only a tail that could still be the start of a secret) and on any window of a stored
log (`mask_window`, while the log API serves it), with the same result.

What cannot be masked: a secret transformed on its way out (base64, hex, split by
the script itself), or one shorter than MIN_SECRET_CHARS, which the config refuses.
"""

from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

MIN_SECRET_CHARS = 8
MASK = b"***"


def url_secrets(url: str) -> list[str]:
    """The credentials in a URL's user part (`https://user:token@host/…`, or a token
    alone as `https://token@host/…`): masked like secrets wherever a job prints them."""
    userinfo = urlsplit(url).netloc.rpartition("@")[0] if "://" in url else ""
    user, _, password = userinfo.partition(":")
    secret = password or user
    # As written in the config (and so in a mirror's config), and as sent.
    return list(dict.fromkeys([secret, unquote(secret)])) if secret else []


class SecretPatterns:
    """The byte strings masked for a set of secret values."""

    def __init__(self, values: Iterable[str]) -> None:
        found: set[bytes] = set()
        for value in values:
            if len(value) < MIN_SECRET_CHARS:
                continue  # the config refuses these; too short to mask without noise
            found.add(value.encode())
            for line in value.splitlines():
                if len(line.strip()) >= MIN_SECRET_CHARS:
                    found.add(line.strip().encode())
        self.patterns = tuple(sorted(found, key=len, reverse=True))
        self.longest = len(self.patterns[0]) if self.patterns else 0

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def coverage(self, buf: bytes, known: bytes = b"") -> bytearray:
        """1 for each byte of `buf` inside an occurrence of a secret, overlapping ones
        included; `known`: the coverage of the first bytes, found earlier."""
        cov = bytearray(len(buf))
        cov[: len(known)] = known
        for pattern in self.patterns:
            at = buf.find(pattern)
            while at != -1:
                cov[at : at + len(pattern)] = b"\x01" * len(pattern)
                at = buf.find(pattern, at + 1)
        return cov

    def pending_from(self, buf: bytes, floor: int = 0) -> int:
        """Where the tail of `buf` that could still become a secret starts (len(buf)
        when none could): the earliest suffix that is a proper prefix of a secret."""
        earliest = len(buf)
        for pattern in self.patterns:
            first = pattern[:1]
            at = buf.find(first, max(floor, len(buf) - len(pattern) + 1))
            while at != -1 and at < earliest:
                if pattern.startswith(buf[at:]):
                    earliest = at
                    break
                at = buf.find(first, at + 1)
        return earliest


def render(buf: bytes, cov: bytearray, lo: int, hi: int, run_open: bool) -> bytes:
    """buf[lo:hi] with each run of covered bytes as MASK. `run_open`: the byte before
    `lo` was covered, so a run going on at `lo` was announced already."""
    out = bytearray()
    at = lo
    while at < hi:
        start = cov.find(1, at, hi)
        if start == -1:
            out += buf[at:hi]
            break
        out += buf[at:start]
        end = cov.find(0, start, hi)
        end = hi if end == -1 else end
        if not (start == lo and run_open):
            out += MASK
        at = end
    return bytes(out)


class StreamMasker:
    """Masks a stream fed in pieces of any size: what `feed` returns is final."""

    def __init__(self, patterns: SecretPatterns) -> None:
        self._patterns = patterns
        self._held = b""
        # Coverage of the held bytes by secrets found whole before: one that started
        # before the cut may reach past it, and its bytes there must stay covered.
        self._held_cov = b""
        self._run_open = False

    def feed(self, data: bytes) -> bytes:
        if not self._patterns:
            return data
        buf = self._held + data
        cov = self._patterns.coverage(buf, self._held_cov)
        cut = self._patterns.pending_from(buf)
        out = render(buf, cov, 0, cut, self._run_open)
        if cut:
            self._run_open = cov[cut - 1] == 1
        self._held, self._held_cov = buf[cut:], bytes(cov[cut:])
        return out

    def flush(self) -> bytes:
        """The held tail, at the end of the stream."""
        buf, self._held = self._held, b""
        cov = self._patterns.coverage(buf, self._held_cov)
        return render(buf, cov, 0, len(buf), self._run_open)


def mask_window(
    patterns: SecretPatterns, ext: bytes, ext_start: int, lo: int, hi: int, complete: bool
) -> tuple[bytes, int]:
    """Mask bytes [lo, hi) of a stored log, given `ext`: the log's bytes from
    `ext_start`, which must reach `patterns.longest` bytes before `lo` (or the log's
    start) and `longest - 1` past `hi` (or the log's end). Returns the masked bytes and
    the offset to read from next: before `hi` when the log may still grow and its last
    bytes could be the start of a secret."""
    a, b = lo - ext_start, hi - ext_start
    if not patterns:
        return ext[a:b], hi
    cov = patterns.coverage(ext)
    # While the log may grow, a secret could start before `hi` and end past what was
    # read: hold back whatever could be its start (the log may have grown between the
    # read of its size and of `ext`, so `ext` can reach a little past `hi`).
    if not complete and len(ext) - b < patterns.longest - 1:
        b = min(b, max(a, patterns.pending_from(ext, a)))
    run_open = a > 0 and cov[a - 1] == 1
    return render(ext, cov, a, b, run_open), ext_start + b
