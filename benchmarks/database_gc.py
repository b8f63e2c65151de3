"""Benchmark: ``gc`` of 1,000,000 expired sessions in batches, live sessions untouched.

Run by hand (not part of the test suite)::

    python benchmarks/database_gc.py                      # PostgreSQL on 127.0.0.1:5432/test
    python benchmarks/database_gc.py --url mysql+pymysql://root@127.0.0.1:3306/test
    python benchmarks/database_gc.py --expired 100000 --live 10000 --batch-size 2000

It fills a fresh table (``sessions_bench_<random>``, dropped afterwards) with
``--expired`` rows idle for a day and ``--live`` rows active now, then times
``DatabaseSessionHandler.gc_batches`` (what ``satchel gc`` runs) and prints
the total time, the number of batches and the slowest batch: each batch is
its own transaction, so the slowest batch bounds how long any lock is held.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import time

import sqlalchemy as sa

from satchel import SessionConfig
from satchel_database import DatabaseSessionHandler, create_handler

DEFAULT_URL = os.environ.get(
    "SATCHEL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
LIFETIME_SECONDS = 7200
PAYLOAD = '{"v":1,"data":{"cart":[1,2,3],"user_id":42},"meta":{"flash":[]}}' * 3
INSERT_CHUNK = 10_000


def fill(handler: DatabaseSessionHandler, expired: int, live: int) -> None:
    """Insert the rows as fast as the database allows (server-side on PostgreSQL)."""
    now = int(time.time())
    old = now - 86_400
    table = handler.table
    with handler.engine.begin() as connection:
        if handler.engine.dialect.name == "postgresql":
            statement = sa.text(
                f"INSERT INTO {table.name} (id, payload, last_activity) "
                "SELECT encode(sha256(convert_to(:tag || g::text, 'UTF8')), 'hex'), :payload, "
                "CASE WHEN g <= :expired THEN :old ELSE :now END "
                "FROM generate_series(1, :total) AS g"
            )
            connection.execute(
                statement,
                {
                    "tag": secrets.token_hex(4),
                    "payload": PAYLOAD,
                    "expired": expired,
                    "old": old,
                    "now": now,
                    "total": expired + live,
                },
            )
            connection.execute(sa.text(f"ANALYZE {table.name}"))
            return
        rows = (
            {
                "id": secrets.token_hex(32),
                "payload": PAYLOAD,
                "last_activity": old if index < expired else now,
            }
            for index in range(expired + live)
        )
        chunk: list[dict[str, object]] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) == INSERT_CHUNK:
                connection.execute(sa.insert(table), chunk)
                chunk = []
        if chunk:
            connection.execute(sa.insert(table), chunk)


def count(handler: DatabaseSessionHandler) -> int:
    with handler.engine.connect() as connection:
        statement = sa.select(sa.func.count()).select_from(handler.table)
        return int(connection.execute(statement).scalar_one())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="SQLAlchemy URL of the database")
    parser.add_argument("--expired", type=int, default=1_000_000, help="expired rows to prune")
    parser.add_argument("--live", type=int, default=100_000, help="live rows that must stay")
    parser.add_argument("--batch-size", type=int, default=5000, help="rows per DELETE")
    args = parser.parse_args()

    config = SessionConfig(
        driver="database",
        connection=args.url,
        table=f"sessions_bench_{secrets.token_hex(4)}",
        lifetime=LIFETIME_SECONDS / 60,
        options={"gc_batch_size": args.batch_size},
    )
    handler = create_handler(config)
    try:
        handler.create_table()
        started = time.perf_counter()
        fill(handler, args.expired, args.live)
        print(
            f"filled {args.expired:,} expired + {args.live:,} live rows "
            f"in {time.perf_counter() - started:.1f} s ({handler.engine.dialect.name})"
        )

        started = time.perf_counter()
        expected = handler.count_expired(LIFETIME_SECONDS)
        counted = time.perf_counter() - started

        batch_times: list[float] = []
        removed = 0
        started = time.perf_counter()
        batch_started = started
        for batch in handler.gc_batches(LIFETIME_SECONDS):
            now = time.perf_counter()
            batch_times.append(now - batch_started)
            batch_started = now
            removed += batch
        elapsed = time.perf_counter() - started

        remaining = count(handler)
        print(f"count_expired: {expected:,} in {counted:.2f} s")
        print(
            f"gc: removed {removed:,} rows in {elapsed:.1f} s "
            f"({removed / elapsed:,.0f} rows/s) in {len(batch_times)} batches of "
            f"{args.batch_size:,}; batch median {statistics.median(batch_times) * 1000:.0f} ms, "
            f"slowest {max(batch_times) * 1000:.0f} ms"
        )
        print(f"left: {remaining:,} rows (live rows expected: {args.live:,})")
        ok = removed == args.expired and remaining == args.live
        print("OK: every expired row removed, every live row kept" if ok else "MISMATCH")
        return 0 if ok else 1
    finally:
        handler.drop_table()
        handler.close()


if __name__ == "__main__":
    raise SystemExit(main())
