"""The ingest loop, driven by a scripted consumer, an in-memory sink written in-process
and a fake clock: batching, bounds, rebalances, stale batches and an unavailable sink.
Every test runs once per Kafka client (kafka-python, librdkafka): the scripted consumer
then has that client's API and follows its rules, and the loop reaches it through that
client's adapter."""

from __future__ import annotations

import itertools
import logging

import pytest
from confluent_kafka import KafkaError, KafkaException
from fakes import CONTROL, FakeClock, ScriptedConsumer, Store, memory_loop
from kafka.errors import KafkaTimeoutError

from antenna_elt.errors import UserError
from antenna_elt.ingest.consumer import LIBRDKAFKA
from antenna_elt.ingest.loop import IngestLoop, LoopOptions
from antenna_elt.ingest.writer import InProcessWriter

pytestmark = pytest.mark.usefixtures("kafka_client")

EVENT = b'{"timestamp": 1795489200, "id": "00000000-0000-0000-0000-000000000001", "antenna_id": "a0000000-0000-0000-0000-00000000000a", "bytes": 7, "app": "SKYPE"}'


def values(n: int, value: bytes = EVENT) -> list[bytes | None]:
    return [value] * n


def everything(consumer: ScriptedConsumer) -> list[tuple[int, int]]:
    return sorted((p, o) for p, log in consumer.log.items() for o in range(len(log)))


def test_batches_flush_by_count() -> None:
    consumer = ScriptedConsumer(FakeClock(), {0: values(10)})
    store = Store()
    stats = memory_loop(consumer, store, batch_size=4).run()
    assert [n for _, n in store.batches] == [4, 4, 2]
    assert sorted(store.landed) == everything(consumer)
    assert (stats.events, stats.rejects, stats.batches) == (10, 0, 3)


def test_batches_flush_by_bytes() -> None:
    consumer = ScriptedConsumer(FakeClock(), {0: values(7, b"x" * 10)}, per_poll=1)
    store = Store()
    stats = memory_loop(consumer, store, max_batch_bytes=25).run()
    assert [n for _, n in store.batches] == [3, 3, 1]
    assert (stats.events, stats.rejects) == (0, 7)


def test_a_batch_flushes_when_its_oldest_message_reaches_max_latency() -> None:
    clock = FakeClock()
    consumer = ScriptedConsumer(clock, {0: values(3)})
    # polls wait their timeout while nothing arrives; stop well after the deadline
    consumer.script[40] = lambda c: loop.stop()
    store = Store()
    loop = memory_loop(consumer, store, max_latency=2.0, until_caught_up=False)
    loop.run()
    read_at = 1_000.0 + 0.5  # the first poll joined the group and waited 0.5 s
    assert store.batches == [(read_at + 2.0, 3)]


def test_a_quiet_partition_does_not_hold_a_batch_past_max_latency() -> None:
    clock = FakeClock()
    consumer = ScriptedConsumer(clock, {0: values(1)})
    consumer.script[6] = lambda c: c.produce(0, EVENT)
    consumer.script[30] = lambda c: loop.stop()
    store = Store()
    loop = memory_loop(consumer, store, max_latency=1.0, until_caught_up=False)
    loop.run()
    assert [n for _, n in store.batches] == [1, 1]
    assert store.batches[0][0] == 1_000.5 + 1.0


def test_flushing_when_caught_up_writes_a_quiet_stream_at_once() -> None:
    clock = FakeClock()
    consumer = ScriptedConsumer(clock, {0: values(1)})
    consumer.script[6] = lambda c: c.produce(0, EVENT)
    consumer.script[30] = lambda c: loop.stop()
    store = Store()
    loop = memory_loop(
        consumer, store, max_latency=60.0, until_caught_up=False, flush_when_caught_up=True
    )
    loop.run()
    read_at = 1_000.0 + 0.5  # the first poll joined the group and waited 0.5 s
    # each message is written in the poll that read it, not 60 s later
    assert store.batches == [(read_at, 1), (read_at + 3 * 0.5, 1)]


def test_flushing_when_caught_up_still_writes_a_backlog_in_full_batches() -> None:
    consumer = ScriptedConsumer(FakeClock(), {0: values(10), 1: values(7)}, per_poll=3)
    store = Store()
    stats = memory_loop(consumer, store, batch_size=4, flush_when_caught_up=True).run()
    # behind the end, batches fill up; the last one goes when the consumer has caught up
    assert [n for _, n in store.batches] == [4, 4, 4, 4, 1]
    assert sorted(store.landed) == everything(consumer)
    assert stats.messages == 17


def test_a_caught_up_batch_waits_for_the_busy_writer_and_grows_meanwhile() -> None:
    clock = FakeClock()
    # a message every 10 ms; a write takes 25 ms
    busy = {n: (lambda c: c.produce(0, EVENT)) for n in range(2, 42)}
    consumer = ScriptedConsumer(clock, {0: []}, script=busy, poll_cost=0.01)
    consumer.script[60] = lambda c: loop.stop()
    store = Store()
    loop = memory_loop(
        consumer,
        store,
        max_latency=60.0,
        until_caught_up=False,
        flush_when_caught_up=True,
        write_seconds=0.025,
    )
    writer = loop._writer
    loop.run()
    assert sorted(store.landed) == everything(consumer) and len(store.landed) == 40
    submitted = writer.submitted  # type: ignore[attr-defined]
    # the first message goes alone; later ones gather while the previous write runs
    assert submitted[0][1] == 1 and max(n for _, n in submitted) >= 2
    assert len(submitted) < 40
    # a batch never waits more than one write (plus a poll) behind the one before
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(submitted)]
    assert max(gaps) <= 0.025 + 0.01 + 1e-9


def test_a_full_batch_is_prepared_for_the_writer_while_the_write_before_runs() -> None:
    """The process writer's pickling of a batch happens before the loop waits for the
    write before it, so the writer gets the next batch as soon as it is free (issue 15:
    the writer process had waited ~28 % of the time for the pickle)."""
    consumer = ScriptedConsumer(FakeClock(), {0: values(40)}, per_poll=4, poll_cost=0.001)
    store = Store()
    loop = memory_loop(consumer, store, batch_size=8, write_seconds=0.05)
    writer = loop._writer
    loop.run()
    assert sorted(store.landed) == everything(consumer)
    assert writer.prepared == [(8, False)] + [(8, True)] * 4  # type: ignore[attr-defined]
    assert writer.handed == [True] * 5  # type: ignore[attr-defined]


def test_until_caught_up_ends_at_the_end_offsets_seen_at_start_on_a_busy_topic() -> None:
    busy = {n: (lambda c: c.produce(0, EVENT)) for n in range(3, 10_000)}
    consumer = ScriptedConsumer(FakeClock(), {0: values(5), 1: values(3)}, per_poll=2, script=busy)
    store = Store()
    memory_loop(consumer, store).run()
    start = [(0, o) for o in range(5)] + [(1, o) for o in range(3)]
    assert set(start) <= set(store.landed)
    assert len(store.landed) == len(set(store.landed)) < 20
    assert consumer.closed


def test_max_messages_lands_exactly_that_many_and_stops() -> None:
    consumer = ScriptedConsumer(FakeClock(), {0: values(10), 1: values(10)})
    store = Store()
    stats = memory_loop(consumer, store, max_messages=7, until_caught_up=False).run()
    assert len(store.landed) == stats.messages == 7
    assert len(set(store.landed)) == 7


def test_assignment_seeks_to_the_sink_offsets_not_kafkas() -> None:
    consumer = ScriptedConsumer(FakeClock(), {0: values(5), 1: values(5)})
    store = Store()
    store.land(0, range(0, 3))  # an earlier run stored partition 0 up to offset 3
    memory_loop(consumer, store).run()
    assert consumer.seeks == [(0, 3), (1, "beginning")]
    assert sorted(store.landed) == everything(consumer)  # each offset exactly once
    assert consumer.commits[-1] == {0: 5, 1: 5}  # mirrored to Kafka for lag tools


def test_revoke_drops_the_buffered_messages_of_the_partition() -> None:
    consumer = ScriptedConsumer(FakeClock(), {0: values(4), 1: values(4)}, per_poll=1)
    # partition 1 moves to another consumer while one of its messages waits in the batch
    consumer.script[7] = lambda c: c.rebalance([0])
    store = Store()
    memory_loop(consumer, store).run()
    assert sorted(store.landed) == [(0, o) for o in range(4)]


def test_a_partition_assigned_again_resumes_at_the_stored_offsets() -> None:
    consumer = ScriptedConsumer(FakeClock(), {0: values(4), 1: values(4)}, per_poll=1)
    consumer.script[7] = lambda c: c.rebalance([0])
    consumer.script[9] = lambda c: c.rebalance([0, 1])
    store = Store()
    memory_loop(consumer, store).run()
    assert sorted(store.landed) == everything(consumer)  # nothing lost, nothing doubled
    assert consumer.seeks.count((1, "beginning")) == 2


def test_records_fetched_in_the_assigning_poll_ahead_of_the_sink_are_not_kept() -> None:
    # the sink was reset (or another sink shares the group): Kafka's committed offset 3
    # is ahead of the sink's (none); kafka-python may return records from offset 3 in the
    # same poll that ran the assignment callback
    consumer = ScriptedConsumer(FakeClock(), {0: values(6)}, fetch_on_join=True)
    consumer.committed = {0: 3}
    store = Store()
    memory_loop(consumer, store).run()
    assert sorted(store.landed) == everything(consumer)
    assert consumer.seeks == [(0, "beginning")]


def test_records_of_a_reassignment_fetched_before_the_seek_are_not_kept() -> None:
    # partition 0 comes back in a later rebalance; the poll that runs the callback fetches
    # from Kafka's committed offset (ahead of the sink's) before the loop can seek
    # (kafka-python; librdkafka assigns it at the sink's offset in the callback). Partition
    # 1 holds more than two polls read, so the run is not over before that rebalance.
    consumer = ScriptedConsumer(FakeClock(), {0: values(4), 1: values(40)}, per_poll=4)
    consumer.committed = {0: 3}
    consumer.script[2] = lambda c: c.rebalance([1])
    consumer.script[3] = lambda c: c.rebalance([0, 1])
    store = Store()
    memory_loop(consumer, store).run()
    assert sorted(store.landed) == everything(consumer)  # nothing lost, nothing doubled


def test_until_caught_up_ends_on_a_topic_whose_last_records_are_transaction_markers() -> None:
    # a committed transaction ends with its marker; an aborted one's records are skipped
    # too: the end offset lies past every record poll returns
    consumer = ScriptedConsumer(
        FakeClock(), {0: [*values(3), CONTROL], 1: [*values(2), CONTROL, CONTROL, CONTROL]}
    )
    store = Store()
    stats = memory_loop(consumer, store).run()
    assert sorted(store.landed) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    assert store.offsets == {0: 3, 1: 2}  # the next offsets of the records read
    assert stats.messages == 5


def test_a_partition_holding_only_a_marker_beyond_the_stored_offset_is_caught_up() -> None:
    # an earlier run stored offset 3; the only thing after it is the commit marker at 3
    consumer = ScriptedConsumer(FakeClock(), {0: [*values(3), CONTROL]})
    store = Store()
    store.land(0, range(0, 3))
    stats = memory_loop(consumer, store).run()
    assert stats.messages == 0 and consumer.closed


def test_stale_batch_rereads_from_the_stored_offsets_without_loss_or_doubling() -> None:
    consumer = ScriptedConsumer(FakeClock(), {0: values(10)})
    store = Store()
    # another writer lands offsets 0-5 of partition 0 while this batch is on its way
    store.before_write = lambda s: s.land(0, range(0, 6))
    stats = memory_loop(consumer, store).run()
    assert stats.stale_batches == 1
    assert consumer.seeks[-1] == (0, 6)
    assert sorted(store.landed) == everything(consumer)


def test_unavailable_sink_is_retried_with_backoff_then_written_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    consumer = ScriptedConsumer(clock, {0: values(5)})
    store = Store(unavailable=3)
    caplog.set_level(logging.INFO, "antenna_elt.ingest")
    stats = memory_loop(consumer, store).run()
    assert sorted(store.landed) == everything(consumer)
    assert store.attempts == 4 and stats.batches == 1
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert retries == [
        "memory sink unavailable (memory sink is down); retrying in 1 s",
        "memory sink unavailable (memory sink is down); retrying in 2 s",
        "memory sink unavailable (memory sink is down); retrying in 4 s",
    ]
    assert "memory sink is back; batch of 5 messages written" in caplog.messages
    assert not consumer.paused  # the consumer waited paused, then resumed


def test_a_stop_while_the_sink_is_down_abandons_the_batch_for_the_next_start() -> None:
    consumer = ScriptedConsumer(FakeClock(), {0: values(5)})
    store = Store(unavailable=10**6)
    loop = memory_loop(consumer, store, until_caught_up=False, max_latency=1.0)
    consumer.script[20] = lambda c: loop.stop()
    stats = loop.run()
    assert store.landed == [] and stats.messages == 0


def test_unreachable_kafka_fails_a_bounded_run_with_one_line(kafka_client: str) -> None:
    def unreachable(*_: object, **__: object) -> None:
        if kafka_client == LIBRDKAFKA:  # what list_topics raises without a broker
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Broker transport failure"))
        raise KafkaTimeoutError("Unable to bootstrap from [('scripted', 9092)]")

    options = LoopOptions(
        "devices", "unit", "scripted:9092", until_caught_up=True, client=kafka_client
    )
    loop = IngestLoop(
        lambda: None,  # type: ignore[arg-type, return-value]
        options,
        consumer_factory=unreachable,
        writer_factory=InProcessWriter,
        clock=FakeClock(),
    )
    loop.sink = type("S", (), {"setup": lambda self: None, "description": "x"})()  # type: ignore[assignment]
    with pytest.raises(UserError, match=r"^Kafka at scripted:9092 is unreachable; start it"):
        loop.run()


@pytest.mark.parametrize(
    ("client", "writer", "refused"),
    [("kafka-python", "ProcessWriter", False), (LIBRDKAFKA, "InProcessWriter", True)],
)
def test_the_client_chooses_where_the_sink_writes(
    monkeypatch: pytest.MonkeyPatch, client: str, writer: str, refused: bool
) -> None:
    """kafka-python decodes in Python (a core): its sink writes in a process of its own.
    librdkafka decodes in C: the loop writes each batch itself, in one process with no
    pandas or numpy (issue 15: memory)."""
    import functools
    import sys

    from fakes import MemorySink

    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))  # the refusal stays here
    options = LoopOptions(topic="t", group_id="g", bootstrap_servers="k:9092", client=client)
    loop = IngestLoop(functools.partial(MemorySink, Store(), FakeClock()), options)
    try:
        assert type(loop._writer).__name__ == writer
        assert any(type(f).__name__ == "_NotImported" for f in sys.meta_path) is refused
    finally:
        loop._writer.shutdown()
