"""Live readers parked on a stream, keyed by the position they wait at.

A commit wakes every group whose position is now behind the tail, once. The
engine hands whole groups to its wake listener so that all readers waiting at
the same position can be served with one encoded response (encode once,
write many). The engine never looks inside a waiter.
"""

from __future__ import annotations


class WaiterSet:
    __slots__ = ("_by_position", "count")

    def __init__(self) -> None:
        # Inner dicts keep insertion order and make removal O(1).
        self._by_position: dict[int, dict[object, None]] = {}
        # Readers parked (len() without a call, for the commit path).
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def add(self, position: int, waiter: object) -> None:
        group = self._by_position.get(position)
        if group is None:
            self._by_position[position] = {waiter: None}
        else:
            group[waiter] = None
        self.count += 1

    def discard(self, position: int, waiter: object) -> None:
        group = self._by_position.get(position)
        if group is None:
            return
        if waiter not in group:
            return
        del group[waiter]
        self.count -= 1
        if not group:
            del self._by_position[position]

    def pop_ready(self, tail: int, everything: bool) -> list[tuple[int, list[object]]]:
        """Remove and return the groups to wake: those behind tail, or all."""
        if not self._by_position:
            return []
        if everything:
            ready = [(p, list(g)) for p, g in self._by_position.items()]
            self._by_position.clear()
        else:
            ready = [(p, list(g)) for p, g in self._by_position.items() if p < tail]
            for p, _ in ready:
                del self._by_position[p]
        for _, g in ready:
            self.count -= len(g)
        return ready
