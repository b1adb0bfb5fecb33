"""The scan store: the Redis keys of a scan and the atomic reads and writes on them.

A scan lives in four keys, all starting with the configured key prefix:

- ``record:<id>``, a hash with the scan's owner, status, total, timestamps and filters;
- ``done:<id>``, the set of strategy ids that have finished, so recording a strategy
  twice (a retried write) counts it once;
- ``results:<id>``, a hash from strategy id to its JSON results entry;
- ``lookup:<scan_id>``, a string whose value is the record key, which is how any worker
  finds a scan from its id.

``<id>`` is the scan id, except under the shared-result-slot fault. All four keys share
one relative TTL (the retention), refreshed by every write. Timestamps are wall-clock
``time.time()`` values taken in the worker, never the store's clock, so that a faked
worker clock governs staleness.

Writes to a running scan go through a Lua script that first checks the record is still
``scanning`` with a fresh heartbeat, so a worker that was presumed dead cannot revive a
scan that readers already reported ``failed``. The terminal write is a WATCH/MULTI/EXEC
transaction, and a status read is one Lua script, so it never mixes two moments of a scan.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import WatchError
from redis.typing import EncodableT, FieldT

from service_under_test.settings import Settings

logger = logging.getLogger(__name__)

RECORD: Final = "record:"
DONE: Final = "done:"
RESULTS: Final = "results:"
LOOKUP: Final = "lookup:"

# Attempts at the terminal transaction when another client changes the record between
# WATCH and EXEC. Only another scan sharing the record (a fault) does that.
_MAX_WATCH_ATTEMPTS: Final = 5


class ScanStatus(enum.StrEnum):
    """Status of a scan as clients see it."""

    # The scan's strategies are running, and its heartbeat is fresh.
    SCANNING = "scanning"
    # Every strategy finished. Terminal: nothing writes to the scan afterwards.
    COMPLETE = "complete"
    # The scan stopped early, or its heartbeat went stale. Terminal.
    FAILED = "failed"
    # No scan with this id exists for this user, or its keys expired.
    NOT_FOUND = "not_found"


class WriteOutcome(enum.StrEnum):
    """Result of a write to a running scan."""

    # The write was applied.
    OK = "ok"
    # The record does not exist: it expired, or the store lost its data.
    MISSING = "missing"
    # The record is already complete or failed.
    TERMINAL = "terminal"
    # The heartbeat is older than stale_s, so readers may already report the scan failed.
    STALE = "stale"


@dataclass(frozen=True)
class ScanKeys:
    """The four store keys of one scan."""

    record: str
    done: str
    results: str
    lookup: str

    @classmethod
    def build(cls, prefix: str, scan_id: str, record_id: str) -> ScanKeys:
        """Return the keys of scan ``scan_id`` whose record and results use ``record_id``."""
        return cls(
            record=f"{prefix}{RECORD}{record_id}",
            done=f"{prefix}{DONE}{record_id}",
            results=f"{prefix}{RESULTS}{record_id}",
            lookup=f"{prefix}{LOOKUP}{scan_id}",
        )

    @classmethod
    def from_record_key(cls, prefix: str, scan_id: str, record_key: str) -> ScanKeys:
        """Return the keys of scan ``scan_id`` given the record key its lookup points to."""
        record_id = record_key.removeprefix(f"{prefix}{RECORD}")
        return cls.build(prefix, scan_id, record_id)

    @property
    def all(self) -> tuple[str, str, str, str]:
        return (self.record, self.done, self.results, self.lookup)


@dataclass(frozen=True)
class KeyTtls:
    """The TTL each key of a scan gets, in ms, and whether progress drops some of them.

    The correct service gives all four keys the retention. Faults shorten one of them or,
    with ``persist_on_progress``, make progress writes remove the TTL of the record and
    the lookup (as a plain SET does) while later refreshes only touch keys that still
    have a TTL.
    """

    record_ms: int
    done_ms: int
    results_ms: int
    lookup_ms: int
    persist_on_progress: bool = False

    @classmethod
    def uniform(cls, ttl_ms: int) -> KeyTtls:
        return cls(ttl_ms, ttl_ms, ttl_ms, ttl_ms)

    def for_keys(self) -> tuple[int, int, int, int]:
        """Return the TTLs in the order of ``ScanKeys.all``."""
        return (self.record_ms, self.done_ms, self.results_ms, self.lookup_ms)


@dataclass(frozen=True)
class ScanSnapshot:
    """A scan as one atomic read saw it.

    ``status`` is the stored status, which does not account for a stale heartbeat.
    ``results`` maps strategy id to its entry and is None unless results were requested.
    """

    keys: ScanKeys
    user: str
    status: ScanStatus
    total: int
    completed: int
    opportunities: int
    heartbeat_at: float
    strategy_ids: tuple[str, ...]
    results: Mapping[str, dict[str, object]] | None


# Read a scan in one step. KEYS[1] is the lookup key. ARGV[1] is the key prefix,
# ARGV[2] a record key to use instead of the lookup key ('' to read the lookup key),
# ARGV[3] '1' to include the results hash. Returns nil for an unknown scan, otherwise
# {record key, record fields, done count, results fields}.
# NOTE: the script derives the done and results key names from the record key, so they
# are not declared in KEYS. That works on a single Redis but not on Redis Cluster.
_READ_SCAN: Final = """
local record_key = ARGV[2]
if record_key == '' then
    record_key = redis.call('GET', KEYS[1])
    if not record_key then
        return false
    end
end
local record = redis.call('HGETALL', record_key)
if #record == 0 then
    return false
end
local record_id = string.sub(record_key, string.len(ARGV[1]) + string.len('record:') + 1)
local done = redis.call('SCARD', ARGV[1] .. 'done:' .. record_id)
local results = {}
if ARGV[3] == '1' then
    results = redis.call('HGETALL', ARGV[1] .. 'results:' .. record_id)
end
return {record_key, record, done, results}
"""

# Write to a running scan unless it is missing, terminal or stale. KEYS are the record,
# done set, results hash and lookup key. ARGV: now (seconds), stale_s, unused,
# strategy id ('' for a heartbeat), results entry JSON, opportunities found so far,
# '1' to add the strategy to the done set, then the TTL in ms of each key in KEYS order,
# then '1' when progress removes the TTL of the record and lookup (a fault).
# Returns a WriteOutcome value.
_GUARDED_WRITE: Final = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
    return 'missing'
end
if status ~= 'scanning' then
    return 'terminal'
end
local now = tonumber(ARGV[1])
local heartbeat_at = tonumber(redis.call('HGET', KEYS[1], 'heartbeat_at'))
if heartbeat_at and now - heartbeat_at > tonumber(ARGV[2]) then
    return 'stale'
end
redis.call('HSET', KEYS[1], 'heartbeat_at', ARGV[1])
if ARGV[4] ~= '' then
    redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
    redis.call('HSET', KEYS[1], 'opportunities', ARGV[6])
    if ARGV[7] == '1' then
        redis.call('SADD', KEYS[2], ARGV[4])
    end
end
local persist = ARGV[12] == '1'
for index, key in ipairs(KEYS) do
    if persist and ARGV[4] ~= '' and (index == 1 or index == 4) then
        redis.call('PERSIST', key)
    elseif not persist or redis.call('PTTL', key) ~= -1 then
        redis.call('PEXPIRE', key, ARGV[7 + index])
    end
end
return 'ok'
"""


class Store:
    """The store operations of the scan service, on one redis client.

    The methods make one attempt each. Callers wrap them in ``retry.call_with_retry``.
    """

    def __init__(self, client: Redis, settings: Settings, ttls: KeyTtls | None = None) -> None:
        self.client = client
        self.prefix = settings.key_prefix
        self.ttls = ttls or KeyTtls.uniform(settings.retention_ms)
        self.stale_s = settings.stale_s
        self._read_scan = client.register_script(_READ_SCAN)
        self._guarded_write = client.register_script(_GUARDED_WRITE)

    async def close(self) -> None:
        await self.client.aclose()

    def keys(self, scan_id: str, record_id: str | None = None) -> ScanKeys:
        return ScanKeys.build(self.prefix, scan_id, record_id or scan_id)

    async def create_placeholder(
        self, keys: ScanKeys, fields: Mapping[str, str | int | float], write_lookup: bool
    ) -> None:
        """Write a fresh record in one transaction, clearing any progress and results.

        Clearing makes a retried or repeated placeholder start from an empty scan.
        """
        mapping: dict[FieldT, EncodableT] = {name: value for name, value in fields.items()}
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(keys.record, keys.done, keys.results)
            pipe.hset(keys.record, mapping=mapping)
            pipe.pexpire(keys.record, self.ttls.record_ms)
            if write_lookup:
                pipe.set(keys.lookup, keys.record, px=self.ttls.lookup_ms)
            await pipe.execute()

    async def write_progress(
        self,
        keys: ScanKeys,
        now_s: float,
        entry: Mapping[str, object],
        opportunities: int,
        add_to_done: bool = True,
    ) -> WriteOutcome:
        """Store one finished strategy's results entry and mark it done, if the scan runs."""
        strategy_id = str(entry["strategy_id"])
        reply = await self._guarded_write(
            keys=list(keys.all),
            args=[
                repr(now_s),
                repr(self.stale_s),
                "",
                strategy_id,
                json.dumps(entry),
                opportunities,
                "1" if add_to_done else "0",
                *self.ttls.for_keys(),
                "1" if self.ttls.persist_on_progress else "0",
            ],
        )
        return WriteOutcome(reply)

    async def write_heartbeat(self, keys: ScanKeys, now_s: float) -> WriteOutcome:
        """Set heartbeat_at and refresh every TTL, if the scan runs."""
        reply = await self._guarded_write(
            keys=list(keys.all),
            args=[repr(now_s), repr(self.stale_s), "", "", "", 0, "0", *self.ttls.for_keys(),
                  "1" if self.ttls.persist_on_progress else "0"],
        )
        return WriteOutcome(reply)

    async def finish(
        self,
        keys: ScanKeys,
        status: ScanStatus,
        total: int,
        now_s: float,
        delete_lookup: bool = False,
    ) -> tuple[WriteOutcome, ScanStatus]:
        """Write the terminal status in one transaction and return the outcome and status.

        A ``complete`` request is written as ``failed`` when the heartbeat is stale,
        because readers may already have reported the scan failed. A retry after a lost
        reply finds its own terminal status and returns OK.
        """
        for _ in range(_MAX_WATCH_ATTEMPTS):
            try:
                return await self._finish_once(keys, status, total, now_s, delete_lookup)
            except WatchError:
                logger.debug("record %s changed during the terminal write; retrying", keys.record)
        raise WatchError(
            f"record {keys.record} changed during each of {_MAX_WATCH_ATTEMPTS} terminal writes"
        )

    async def _finish_once(
        self,
        keys: ScanKeys,
        status: ScanStatus,
        total: int,
        now_s: float,
        delete_lookup: bool,
    ) -> tuple[WriteOutcome, ScanStatus]:
        async with self.client.pipeline(transaction=True) as pipe:
            await pipe.watch(keys.record)
            stored_status, heartbeat_at = await pipe.hmget(keys.record, ["status", "heartbeat_at"])
            if stored_status is None:
                return WriteOutcome.MISSING, status
            current = ScanStatus(_text(stored_status))
            if current is not ScanStatus.SCANNING:
                if current is status:
                    return WriteOutcome.OK, status
                return WriteOutcome.TERMINAL, current

            outcome = WriteOutcome.OK
            if heartbeat_at is not None and now_s - float(_text(heartbeat_at)) > self.stale_s:
                status = ScanStatus.FAILED
                outcome = WriteOutcome.STALE
            refresh = list(zip(keys.all, self.ttls.for_keys(), strict=True))
            if self.ttls.persist_on_progress:
                refresh = [(key, ttl_ms) for key, ttl_ms in refresh
                           if await pipe.pttl(key) != -1]

            pipe.multi()
            pipe.hset(
                keys.record,
                mapping={"status": status.value, "total": total, "finished_at": repr(now_s)},
            )
            for key, ttl_ms in refresh:
                pipe.pexpire(key, ttl_ms)
            if delete_lookup:
                pipe.delete(keys.lookup)
            await pipe.execute()
            return outcome, status

    async def read_scan(
        self, scan_id: str, record_key: str | None = None, with_results: bool = False
    ) -> ScanSnapshot | None:
        """Read a scan in one atomic step, or return None when it does not exist.

        ``record_key`` skips the lookup key, for a worker that keeps the lookup in memory.
        """
        lookup_key = f"{self.prefix}{LOOKUP}{scan_id}"
        reply = await self._read_scan(
            keys=[lookup_key], args=[self.prefix, record_key or "", "1" if with_results else "0"]
        )
        if not reply:
            return None

        found_key, record_fields, done_count, results_fields = reply
        keys = ScanKeys.from_record_key(self.prefix, scan_id, found_key)
        record = _pairs_to_dict(record_fields)
        results = _decode_results(results_fields) if with_results else None
        return _snapshot_from_record(keys, record, int(done_count), results)

    async def delete_results(self, keys: ScanKeys) -> None:
        await self.client.delete(keys.results)

    async def read_counter(self, keys: ScanKeys) -> int:
        """Return the plain completed counter that only the racy-progress-counter fault keeps."""
        value = await self.client.hget(keys.record, "completed")
        return int(value or 0)

    async def write_counter(self, keys: ScanKeys, completed: int) -> None:
        await self.client.hset(keys.record, "completed", completed)

    async def ping(self) -> None:
        await self.client.ping()


def open_store(settings: Settings, ttls: KeyTtls | None = None) -> Store:
    """Create a store on a new redis client for ``settings.redis_url``.

    The client connects on first use, retries nothing itself, and times out a call after
    half the retry budget, so a hung store leaves room for a second attempt.
    """
    timeout_s = settings.store_retry_budget_s / 2
    client = Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )
    return Store(client, settings, ttls)


def _text(value: bytes | str) -> str:
    # The client decodes replies, but redis-py's types still allow bytes.
    return value.decode() if isinstance(value, bytes) else value


def _pairs_to_dict(fields: Sequence[str]) -> dict[str, str]:
    return dict(zip(fields[::2], fields[1::2], strict=True))


def _decode_results(fields: Sequence[str]) -> dict[str, dict[str, object]]:
    return {strategy_id: json.loads(entry) for strategy_id, entry in _pairs_to_dict(fields).items()}


def _snapshot_from_record(
    keys: ScanKeys,
    record: Mapping[str, str],
    done_count: int,
    results: Mapping[str, dict[str, object]] | None,
) -> ScanSnapshot | None:
    try:
        # Only the racy-progress-counter fault writes the plain "completed" field.
        completed = int(record["completed"]) if "completed" in record else done_count
        return ScanSnapshot(
            keys=keys,
            user=record["user"],
            status=ScanStatus(record["status"]),
            total=int(record["total"]),
            completed=completed,
            opportunities=int(record.get("opportunities", 0)),
            heartbeat_at=float(record["heartbeat_at"]),
            strategy_ids=tuple(json.loads(record["strategy_ids"])),
            results=results,
        )
    except (KeyError, ValueError) as error:
        # The racy-progress-counter fault writes its counter without a guard, so after
        # expiry it can leave a record that has no placeholder fields.
        logger.warning(
            "record %s is incomplete (%r); treating the scan as not found", keys.record, error
        )
        return None
