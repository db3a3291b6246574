"""comet.clients.Clients counts held requests per address too
(``--max-clients-per-address``), with no server: one address at its cap is
refused, others are not, leaving frees a place, and an address that holds
nothing any more is forgotten."""

from __future__ import annotations

import pytest

from comet.clients import CLOSING, Clients, Full


class Holder:
    def __init__(self) -> None:
        self.ended: list[str] = []

    def end(self, why: str) -> None:
        self.ended.append(why)


def test_an_address_at_its_cap_is_refused_and_others_are_not():
    clients = Clients(limit=10, per_address=2)
    first, second = Holder(), Holder()
    clients.admit(first, "ticker.streams", "10.0.0.1")
    clients.admit(second, "chat.streams", "10.0.0.1")
    with pytest.raises(Full, match="10.0.0.1 holds 2"):
        clients.admit(Holder(), "chat.waiting", "10.0.0.1")
    clients.admit(Holder(), "chat.waiting", "10.0.0.2")
    assert clients.counts == {"ticker.streams": 1, "chat.streams": 1, "chat.waiting": 1}

    clients.leave(first, "ticker.streams")
    clients.admit(Holder(), "ticker.streams", "10.0.0.1")  # its place is free again


def test_an_address_that_holds_nothing_is_forgotten():
    clients = Clients(limit=10, per_address=2)
    holders = [Holder() for _ in range(3)]
    for n, holder in enumerate(holders):
        clients.admit(holder, "chat.streams", f"10.0.0.{n}")
    for holder in holders:
        clients.leave(holder, "chat.streams")
    assert clients.by_address == {} and clients.holders == {}


def test_the_global_cap_still_holds_and_zero_means_no_cap_per_address():
    clients = Clients(limit=3, per_address=0)
    for _ in range(3):
        clients.admit(Holder(), "chat.streams", "10.0.0.1")
    with pytest.raises(Full, match="holds 3 clients"):
        clients.admit(Holder(), "chat.streams", "10.0.0.2")


def test_during_shutdown_an_address_at_its_cap_is_let_in_and_released_at_once():
    clients = Clients(limit=10, per_address=1)
    clients.admit(Holder(), "chat.streams", "10.0.0.1")
    clients.closing = True
    late = Holder()
    clients.admit(late, "chat.streams", "10.0.0.1")
    assert late.ended == [CLOSING]
