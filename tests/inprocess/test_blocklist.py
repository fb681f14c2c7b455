"""The in-memory blocklist: correct, thread-safe and bounded."""

import threading

import pytest

from blocklist import MemoryBlocklist, Rotation, session_start


def token(jti: str) -> dict:
    """The claims of a token with this jti (no family, no user mark applies)."""
    return {"jti": jti, "sub": "nobody", "iat": 0.0}


def live_entries(blocklist: MemoryBlocklist) -> int:
    """How many entries the blocklist still holds once the expired ones are purged."""
    blocklist.purge_expired()
    return len(blocklist._entries)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_revoked_until_the_token_would_have_expired():
    clock = FakeClock()
    blocklist = MemoryBlocklist(clock)
    blocklist.revoke("a", clock.now + 60)
    assert blocklist.is_token_revoked(token("a"))
    assert not blocklist.is_token_revoked(token("b"))
    clock.now += 59
    assert blocklist.is_token_revoked(token("a"))
    clock.now += 1
    assert not blocklist.is_token_revoked(token("a"))
    assert live_entries(blocklist) == 0


def test_already_expired_tokens_are_not_stored():
    clock = FakeClock()
    blocklist = MemoryBlocklist(clock)
    blocklist.revoke("old", clock.now - 1)
    assert live_entries(blocklist) == 0


def test_revoking_again_keeps_the_later_expiry():
    clock = FakeClock()
    blocklist = MemoryBlocklist(clock)
    blocklist.revoke("a", clock.now + 100)
    blocklist.revoke("a", clock.now + 10)
    clock.now += 50
    assert blocklist.is_token_revoked(token("a"))
    blocklist.revoke("b", clock.now + 10)
    blocklist.revoke("b", clock.now + 200)
    clock.now += 100
    assert blocklist.is_token_revoked(token("b"))
    assert not blocklist.is_token_revoked(token("a"))


def test_memory_stays_bounded_after_100000_expired_revocations():
    clock = FakeClock()
    blocklist = MemoryBlocklist(clock)
    for i in range(100_000):
        blocklist.revoke(f"jti-{i}", clock.now + 1 + (i % 900))
    assert live_entries(blocklist) == 100_000
    clock.now += 901
    blocklist.revoke("live", clock.now + 900)
    assert live_entries(blocklist) == 1
    assert len(blocklist._heap) == 1


def test_concurrent_revocations_are_all_recorded():
    clock = FakeClock()
    blocklist = MemoryBlocklist(clock)
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        barrier.wait()
        for i in range(2_000):
            blocklist.revoke(f"{n}-{i}", clock.now + 60)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert live_entries(blocklist) == 16_000
    assert all(blocklist.is_token_revoked(token(f"{n}-1999")) for n in range(8))


def test_families_user_marks_and_rotations_expire_too():
    clock = FakeClock()
    blocklist = MemoryBlocklist(clock)
    blocklist.revoke_family("fam", clock.now + 10)
    blocklist.revoke_user("7", clock.now, clock.now + 10)
    assert blocklist.mark_rotated("r", Rotation(clock.now, "next"), clock.now + 10)
    token = {"jti": "j", "fam": "fam", "sub": "7", "iat": clock.now - 1}
    assert blocklist.is_token_revoked(token)
    assert blocklist.get_rotation("r") == Rotation(clock.now, "next")

    clock.now += 10

    assert not blocklist.is_token_revoked(token)
    assert blocklist.get_rotation("r") is None
    assert live_entries(blocklist) == 0


def test_a_user_mark_refuses_only_tokens_of_sessions_started_before_it():
    clock = FakeClock()
    blocklist = MemoryBlocklist(clock)
    blocklist.revoke_user("7", clock.now, clock.now + 100)

    def token(started: float, sub: str = "7", **claims) -> dict:
        return {"jti": "j", "fam": "f", "sub": sub, "fam_iat": started, **claims}

    assert blocklist.is_token_revoked(token(clock.now - 0.000001))
    assert not blocklist.is_token_revoked(token(clock.now))
    assert not blocklist.is_token_revoked(token(clock.now - 5, sub="8"))
    # Minted after the mark by a refresh of an older session: refused all the same.
    assert blocklist.is_token_revoked(token(clock.now - 1, iat=clock.now + 1))
    # An older mark arriving late never lowers the newer one.
    blocklist.revoke_user("7", clock.now - 50, clock.now + 100)
    assert blocklist.is_token_revoked(token(clock.now - 1))


@pytest.mark.parametrize(
    ("claims", "started"),
    [
        ({"fam_iat": 10.5, "auth_time": 10, "iat": 99.0}, 10.5),
        # Tokens minted before fam_iat existed: their login, else their own iat.
        ({"auth_time": 10, "iat": 99.0}, 10.0),
        ({"iat": 99.0}, 99.0),
    ],
)
def test_a_sessions_start_is_read_from_the_oldest_claim_a_token_has(claims, started):
    assert session_start(claims) == started


def test_a_token_is_rotated_once():
    clock = FakeClock()
    blocklist = MemoryBlocklist(clock)
    assert blocklist.mark_rotated("r", Rotation(clock.now, "a"), clock.now + 60)
    assert not blocklist.mark_rotated("r", Rotation(clock.now + 1, "b"), clock.now + 60)
    assert blocklist.get_rotation("r") == Rotation(clock.now, "a")


def test_memory_stays_bounded_across_every_kind_of_entry():
    clock = FakeClock()
    blocklist = MemoryBlocklist(clock)
    for i in range(25_000):
        expires = clock.now + 1 + (i % 900)
        blocklist.revoke(f"jti-{i}", expires)
        blocklist.revoke_family(f"fam-{i}", expires)
        blocklist.revoke_user(str(i), clock.now, expires)
        blocklist.mark_rotated(f"r-{i}", Rotation(clock.now, f"n-{i}"), expires)
    assert live_entries(blocklist) == 100_000
    clock.now += 901
    assert live_entries(blocklist) == 0
    assert blocklist._heap == []
