"""Event values: the RFC 3339 timestamps every record and event carries."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime

import pytest

from clinvk.core.events import utc_timestamp

EDGES = [0.0, 0.0004, 0.0005, 0.0009995, 59.9995, 59.99949999, 1_765_129_999.9999995,
         1_765_129_999.0005, 951_782_400.0, 4_102_444_799.999, -1.5]


def reference(epoch: float) -> str:
    """The timestamp as the aware-datetime formatting writes it."""
    text = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


@pytest.mark.parametrize("epoch", EDGES)
def test_timestamps_round_like_an_aware_datetime_at_the_edges(epoch: float) -> None:
    assert utc_timestamp(epoch) == reference(epoch)


def test_timestamps_round_like_an_aware_datetime_over_many_values() -> None:
    rng = random.Random(7)
    values = [rng.uniform(0, 4e9) for _ in range(20_000)]
    values += [rng.randrange(0, 4 * 10**15) / 1e6 for _ in range(20_000)]
    assert [utc_timestamp(v) for v in values] == [reference(v) for v in values]


def test_now_is_utc_with_milliseconds() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", utc_timestamp())
    assert utc_timestamp(1_800_000_000.25) == "2027-01-15T08:00:00.250Z"


def test_an_event_is_formatted_from_when_it_was_emitted_once_written_out() -> None:
    """The run stamps the emission time; the text is made when the event is written out
    (a run read to completion writes none), and it stays what it was first written as."""
    from clinvk.core.events import message

    event = message("hi")
    event.at = 1_765_000_000.1234
    assert event.timestamp == ""
    assert event.to_dict()["timestamp"] == utc_timestamp(1_765_000_000.1234)
    event.at = 0.5
    assert event.to_dict()["timestamp"] == utc_timestamp(1_765_000_000.1234)
