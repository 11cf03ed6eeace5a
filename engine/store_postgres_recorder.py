"""The PostgreSQL recorder callbridge's store uses: the library's, with its insert's values sent in binary.

eventsourcing (9.5) inserts a batch as one array of its composite ``stored_event`` type, which psycopg
dumps as text, in Python: each event's state as hex, then escaped twice by regular expressions (the
composite's quoting, then the array's). At 100 calls that was half the event writer's time — in a
thread, holding the GIL in stretches the media loop then waited behind at every socket call: 238 loop
stalls over 10 ms in a minute in the worker carrying the calls, p99 24 ms against SQLite's 8. Sent as
four parallel arrays (ids, versions, topics, states) with binary placeholders, psycopg dumps them in
C: about 10 stalls, p99 ~10 ms, less CPU per call (``benchmarks/bridge.py --store postgresql://…``).

Only the statement that inserts changes (``PostgresAggregateRecorder._insert_stored_events``, below the
application recorder's own, which still takes the table's lock and NOTIFYs first): the rows are the
same, in the same order (``unnest`` of parallel arrays yields them in array order, as of the composite
array), and so are the positions returned. The library builds it from the store's environment,
``APPLICATION_RECORDER_TOPIC`` (``engine/store_url.py``); importing this module imports psycopg, so
only a PostgreSQL store does. eventsourcing is pinned below 9.6 (see ``engine/store_rows.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresApplicationRecorder
from psycopg.sql import SQL, Composed, Identifier


class _InsertInBinary(PostgresAggregateRecorder):
    @cached_property
    def _binary_insert(self) -> Composed:
        return SQL(
            "INSERT INTO {schema}.{table} AS t (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) RETURNING notification_id"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))

    def _insert_stored_events(self, curs: Any, stored_events: Sequence[StoredEvent], **_: Any) -> None:
        curs.execute(
            self._binary_insert,
            (
                [event.originator_id for event in stored_events],
                [event.originator_version for event in stored_events],
                [event.topic for event in stored_events],
                [event.state for event in stored_events],
            ),
        )


class BinaryInsertRecorder(PostgresApplicationRecorder, _InsertInBinary):
    """``PostgresApplicationRecorder`` whose insert (reached through its own, after the lock and the
    NOTIFY) sends its values in binary."""
