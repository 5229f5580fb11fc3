"""Event ids: derived from a request's base id, the same however many events it holds."""

from __future__ import annotations

import uuid

import pytest

from headrace.ids import event_id, event_ids, new_base_id


@pytest.mark.parametrize("count", [0, 1, 9_999, 10_000, 10_001])
def test_event_ids_are_the_base_plus_the_index_as_uuids(count: int) -> None:
    base = new_base_id()
    ids = event_ids(base, count)
    assert len(ids) == count
    assert ids == [str(uuid.UUID(int=base + i)) for i in range(count)]
    assert ids == [event_id(base, i) for i in range(count)]
