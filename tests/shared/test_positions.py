"""The position keys the database makes are the `fractional-indexing` library's own.

The writing statements make keys in SQL (migration 0009, docs/decisions/0010): a key
depends on neighbours only the transaction can read. These tests hold the SQL port to the
library, the reference, over edge cases and thousands of random pairs: the same key, byte
for byte, for the same input.
"""

from __future__ import annotations

import random

import pytest
from fractional_indexing import generate_key_between, generate_n_keys_between

DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _random_keys(rng: random.Random, count: int) -> list[str]:
    """Valid keys of every shape: integers of several lengths, long fractions, negatives."""
    keys = {"a0", "a1", "az", "b00", "Zz", "A" + "0" * 25 + "1", "a0V", "a00001", "zzzzzzzzzzzzzzzzzzzzzzzzzzz"[:27]}
    while len(keys) < count:
        head = rng.choice("abcdeXYZ")
        size = ord(head) - ord("a") + 1 if head.islower() else ord("Z") - ord(head) + 1
        key = head + "".join(rng.choice(DIGITS) for _ in range(size))
        if rng.random() < 0.7:
            key += "".join(rng.choice(DIGITS) for _ in range(rng.randint(0, 12))) + rng.choice(DIGITS[1:])
        keys.add(key)
    return sorted(keys)


def _between(sql, pairs: list[tuple[str | None, str | None]]) -> list[str]:
    found = sql.run(
        "SELECT position_between(a, b) FROM unnest(CAST(:a AS text[]), CAST(:b AS text[])) WITH ORDINALITY AS p(a, b, n) ORDER BY n",
        a=[a for a, _ in pairs],
        b=[b for _, b in pairs],
    )
    return [row[0] for row in found]


def test_position_between_is_the_librarys_generate_key_between(sql):
    rng = random.Random(16)
    keys = _random_keys(rng, 400)
    pairs: list[tuple[str | None, str | None]] = [(None, None)]
    pairs += [(None, key) for key in keys] + [(key, None) for key in keys]
    for _ in range(3000):
        a, b = sorted(rng.sample(keys, 2))
        pairs.append((a, b))
    pairs += list(zip(keys, keys[1:]))  # neighbours: the tightest gaps
    expected = [generate_key_between(a, b) for a, b in pairs]
    assert _between(sql, pairs) == expected
    assert all((a is None or a < k) and (b is None or k < b) for (a, b), k in zip(pairs, expected))


def test_position_keys_between_is_the_librarys_generate_n_keys_between(sql):
    rng = random.Random(1616)
    keys = _random_keys(rng, 60)
    cases = [(None, None, 70), (None, "a5", 9), ("a5", None, 9)]
    cases += [(*sorted(rng.sample(keys, 2)), rng.randint(0, 40)) for _ in range(200)]
    for a, b, n in cases:
        (found,) = sql.run("SELECT position_keys_between(:a, :b, CAST(:n AS int))", a=a, b=b, n=n)[0]
        assert found == generate_n_keys_between(a, b, n), (a, b, n)


@pytest.mark.parametrize("ranks", [range(0, 4000), range(3800, 3920), range(62 + 62**2 - 5, 62 + 62**2 + 5)])
def test_position_of_rank_is_the_librarys_key_of_that_rank(sql, ranks):
    """The backfill's keys: the r-th of a0, a1, ... (each one the increment of the one before)."""
    expected = generate_n_keys_between(None, None, ranks.stop)[ranks.start :]
    found = sql.run("SELECT position_of_rank(r) FROM generate_series(CAST(:lo AS bigint), :hi) AS r ORDER BY r", lo=ranks.start, hi=ranks.stop - 1)
    assert [row[0] for row in found] == expected


def test_keys_compare_byte_wise_whatever_the_database_collation(sql):
    """`position` is COLLATE "C": 'Z' < 'a' as the library means, which a linguistic
    collation (en_US: a < Z) would not give."""
    (column,) = sql.run("SELECT collation_name FROM information_schema.columns WHERE table_name = 'tasks' AND column_name = 'position'")[0]
    assert column == "C"
