"""What the celery executor puts on the broker, and how it talks to Redis."""

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from kombu.transport import redis as kombu_redis

from conveyor.domain.jobs import JobSpec
from conveyor.domain.tasks import ResolvedRepo
from conveyor.executors import redis_broker
from conveyor.executors.celery import CeleryExecutor, celery_app
from tests.engine.test_celery import broker_url

SCRIPT = "deploy --token-file /run/secret/deploy-key"


def a_job(queue: str) -> JobSpec:
    repo = ResolvedRepo("app", "https://git.example/app.git", "main", 0, "a" * 40)
    return JobSpec(41, 2, "wf", 3, 1, "deploy", "svc", "dev", (repo,), SCRIPT, 60, (),
                   queue=queue)  # fmt: skip


def test_a_message_names_its_job_and_keeps_its_script_in_the_body_only() -> None:
    executor = CeleryExecutor("memory://", "conveyor")
    queue = f"q-{uuid.uuid4().hex}"
    executor.submit(a_job(queue))
    reader = celery_app("memory://", "conveyor").connection_for_read()
    with reader as conn, conn.SimpleQueue(queue) as messages:
        message = messages.get(timeout=5)
        # What `celery inspect` and Flower show of the job, and what the headers carry.
        assert message.headers["argsrepr"] == "(job 41)"
        assert message.headers["kwargsrepr"] == "{}"
        assert SCRIPT not in repr(message.headers)
        [body_args, _, _] = message.payload
        assert JobSpec.from_json(body_args[0], {}, ()) == a_job(queue)
        message.ack()
    executor.shutdown(wait=False)


def test_only_plain_redis_urls_get_the_shared_client_transport() -> None:
    app = celery_app("redis://:secret@127.0.0.1:6379/0", "q")
    assert app.conf.broker_transport is redis_broker.Transport
    with app.connection_for_write() as conn:
        assert not conn.ssl
        # What the worker's banner and its "Connected to" line show.
        assert conn.as_uri() == "redis://:**@127.0.0.1:6379/0"
    # TLS stays on: kombu turns it on by the transport's name.
    with celery_app("rediss://:secret@127.0.0.1:6380/0", "q").connection_for_write() as conn:
        assert conn.ssl
        assert conn.as_uri().startswith("rediss://")
    assert celery_app("amqp://guest@127.0.0.1//", "q").conf.broker_transport is None


@pytest.fixture
def redis_app() -> Iterator[Celery]:
    app = celery_app(broker_url("redis"), "conveyor")
    yield app
    app.close()


def count_clients(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    made: list[int] = []
    build = kombu_redis.Channel._create_client

    def counted(channel: kombu_redis.Channel, asynchronous: bool = False) -> Any:
        made.append(1)
        return build(channel, asynchronous)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(kombu_redis.Channel, "_create_client", counted)
    return made


def publish_and_take(app: Celery, queue: str, n: int) -> list[str]:
    """Put `n` messages on `queue`, then take and acknowledge each: their bodies."""
    taken = []
    with app.connection_for_write() as conn, conn.SimpleQueue(queue) as messages:
        for i in range(n):
            messages.put(f"m{i}")
        for _ in range(n):
            message = messages.get(timeout=5)
            taken.append(message.payload)
            message.ack()
    return taken


def test_a_redis_channel_sends_all_its_commands_through_one_client(
    redis_app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = count_clients(monkeypatch)
    queue = f"q-{uuid.uuid4().hex}"
    assert publish_and_take(redis_app, queue, 20) == [f"m{i}" for i in range(20)]
    # Kombu's own built one for each publish, receipt and acknowledgement (60 here).
    assert 1 <= len(made) <= 3


def test_a_redis_channel_whose_pools_were_dropped_sends_through_new_ones(
    redis_app: Celery,
) -> None:
    queue = f"q-{uuid.uuid4().hex}"
    with redis_app.connection_for_write() as conn:
        channel = conn.default_channel
        with channel.conn_or_acquire() as client:
            before = client
            assert client.connection_pool is channel.pool
        # What kombu does after a fork: the old pool's connections are not this
        # process's to use.
        channel._disconnect_pools()
        with channel.conn_or_acquire() as client:
            assert client is not before
            assert client.connection_pool is channel.pool
            client.lpush(queue, "after")
            assert client.rpop(queue) == b"after"
