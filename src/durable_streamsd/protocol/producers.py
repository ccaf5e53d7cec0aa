"""Idempotent producer validation (section 5.2.1) as a pure function of the
producer's stored state and the request's epoch and sequence."""

from __future__ import annotations

from typing import Final

from ..engine import ProducerState

ACCEPT: Final = "accept"
DUPLICATE: Final = "duplicate"
STALE_EPOCH: Final = "stale_epoch"
GAP: Final = "gap"
BAD_EPOCH_START: Final = "bad_epoch_start"


class ProducerDecision:
    """A plain class: a dataclass's __init__ stays interpreted when compiled."""

    __slots__ = ("kind", "value")

    def __init__(self, kind: str, value: int = 0) -> None:
        self.kind = kind
        # Current epoch (stale), expected seq (gap), highest accepted seq (duplicate).
        self.value = value


def decide(state: ProducerState | None, epoch: int, seq: int) -> ProducerDecision:
    if state is None:
        return ProducerDecision(ACCEPT) if seq == 0 else ProducerDecision(GAP, 0)
    if epoch < state.epoch:
        return ProducerDecision(STALE_EPOCH, state.epoch)
    if epoch > state.epoch:
        return ProducerDecision(ACCEPT) if seq == 0 else ProducerDecision(BAD_EPOCH_START)
    if seq <= state.last_seq:
        return ProducerDecision(DUPLICATE, state.last_seq)
    if seq == state.last_seq + 1:
        return ProducerDecision(ACCEPT)
    return ProducerDecision(GAP, state.last_seq + 1)
