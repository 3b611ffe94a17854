"""The job log: Conveyor's own lines never cut a secret the job printed in one piece."""

from conveyor.executors.job_log import JobLog

SECRET = "s3cr3t-Value-0123456789-ABCDEFGHIJ"


class ListSink:
    def __init__(self) -> None:
        self.data = bytearray()

    def append(self, data: bytes) -> None:
        self.data += data

    def flush_if_due(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_conveyor_line_between_two_halves_of_a_secret_does_not_release_the_first() -> None:
    sink = ListSink()
    log = JobLog(sink, 10_000, [SECRET])
    log.write(SECRET[:12].encode())  # the job prints half, then is cancelled...
    log.say("cancelled; stopping the job's processes")
    log.write(SECRET[12:].encode() + b"\n")  # ...and its TERM handler prints the rest
    log.end_of_output()
    log.say("build cancelled: cancelled")
    log.close()
    text = sink.data.decode()
    assert SECRET[:12] not in text and SECRET[12:] not in text
    assert text == (
        "[conveyor] cancelled; stopping the job's processes\n"
        "***\n"
        "[conveyor] build cancelled: cancelled\n"
    )


def test_a_conveyor_line_starts_a_line_of_its_own_and_is_masked_too() -> None:
    sink = ListSink()
    log = JobLog(sink, 10_000, [SECRET])
    log.write(b"50% done")
    log.say(f"error talking to {SECRET}")
    log.close()
    assert sink.data.decode() == "50% done\n[conveyor] error talking to ***\n"
