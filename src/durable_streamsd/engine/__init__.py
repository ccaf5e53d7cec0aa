"""The log engine: streams, segments, write-ahead log, group commit,
recovery, expiry and waiters. Knows nothing of HTTP."""

from .committer import FSYNC_MODES, StorageFailedError
from .engine import CorruptDataError, Engine, EngineOptions, RecoveryReport, StorageFullError
from .records import Producer
from .stream import ProducerState, Stream, StreamConfig, is_json_type
from .wal import CorruptLogError

__all__ = [
    "FSYNC_MODES",
    "CorruptDataError",
    "CorruptLogError",
    "Engine",
    "EngineOptions",
    "Producer",
    "ProducerState",
    "RecoveryReport",
    "StorageFailedError",
    "StorageFullError",
    "Stream",
    "StreamConfig",
    "is_json_type",
]
