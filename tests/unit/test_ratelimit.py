"""The post rate's token buckets (comet/ratelimit.py), on a clock the test
turns by hand: a burst passes, the next post waits for its token, each
address has its own bucket, and idle buckets are forgotten."""

from __future__ import annotations

from comet.ratelimit import PostRate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_passes_then_one_post_per_token():
    clock = Clock()
    rate = PostRate(5, 20, clock=clock)
    assert [rate.take("a") for _ in range(20)] == [0.0] * 20
    wait = rate.take("a")
    assert abs(wait - 0.2) < 1e-9 and rate.retry_after(wait) == 1
    clock.now += 0.2
    assert rate.take("a") == 0.0
    assert rate.take("a") > 0


def test_a_refused_post_takes_no_token():
    clock = Clock()
    rate = PostRate(1, 1, clock=clock)
    assert rate.take("a") == 0.0
    for _ in range(50):
        assert rate.take("a") > 0
    clock.now += 1.0
    assert rate.take("a") == 0.0


def test_retry_after_is_whole_seconds_and_at_least_one():
    clock = Clock()
    rate = PostRate(0.25, 1, clock=clock)
    rate.take("a")
    wait = rate.take("a")
    assert wait == 4.0 and rate.retry_after(wait) == 4
    clock.now += 0.5
    assert rate.retry_after(rate.take("a")) == 4  # 3.5 s rounds up
    assert PostRate(5, 1).retry_after(0.001) == 1


def test_each_address_has_its_own_bucket():
    rate = PostRate(1, 2, clock=Clock())
    assert rate.take("a") == rate.take("a") == 0.0
    assert rate.take("a") > 0
    assert rate.take("b") == 0.0


def test_zero_turns_it_off():
    for rate in (PostRate(0, 20), PostRate(5, 0)):
        assert all(rate.take("a") == 0.0 for _ in range(1000))
        assert not rate.buckets


def test_idle_buckets_are_forgotten_so_100000_addresses_leave_few_behind():
    clock = Clock()
    rate = PostRate(5, 20, clock=clock)  # a bucket is full again after 4 s
    most = 0
    for n in range(100_000):
        clock.now += 0.001  # a thousand new addresses a second
        assert rate.take(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}") == 0.0
        most = max(most, len(rate.buckets))
    assert most <= 4001, most  # the addresses of the last 4 s, no more
    clock.now += 4.0
    rate.take("10.255.255.255")
    assert list(rate.buckets) == ["10.255.255.255"]


def test_a_forgotten_bucket_was_full_anyway():
    clock = Clock()
    rate = PostRate(5, 20, clock=clock)
    for _ in range(20):
        rate.take("a")
    clock.now += 4.0  # refilled, so forgetting it changes nothing
    rate.take("b")
    assert "a" not in rate.buckets
    assert [rate.take("a") for _ in range(20)] == [0.0] * 20


def test_most_caps_the_buckets_when_addresses_come_faster_than_they_refill():
    clock = Clock()
    rate = PostRate(1, 20, most=100, clock=clock)
    for n in range(10_000):
        rate.take(str(n))
        assert len(rate.buckets) <= 100
