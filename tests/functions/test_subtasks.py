"""Subtasks and manual order: parent_id's rules, the cascades, `move`, and the listing.

Through the real handlers on real Postgres, two users everywhere it matters: another
user's tree is never touched and never usable.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from fractional_indexing import generate_key_between

from shared.tasks import POSITION_BOUND

# Also run through PgBouncer in transaction mode: the pooler pass of `make test` (tests/conftest.py).
pytestmark = pytest.mark.pooler


def concurrently(count: int, call):
    barrier = threading.Barrier(count)

    def run(i):
        barrier.wait()
        return call(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def _sub(api, user, parent, title="sub", **fields):
    return api.create_task(user, title=title, parent_id=parent["id"], **fields)


def _children(api, user, parent_id: str | None) -> list[str]:
    reply = api.get("/api/me/tasks", user=user, query={"parent_id": parent_id or "none", "sort": "position", "limit": 200})
    assert reply.status == 200, reply.body
    return [item["title"] for item in reply.json()["items"]]


def _move(api, user, task, parent=None, after=None, **kw):
    return api.post(
        f"/api/me/tasks/{task['id']}/move",
        user=user,
        json={"parent_id": parent and parent["id"], "after": after and after["id"]},
        **kw,
    )


def _refused(reply, field: str) -> str:
    assert reply.status == 422, reply.body
    (error,) = reply.problem["errors"]
    assert error["loc"] == ["body", field], error
    return error["msg"]


def _rows(sql, user: str) -> list:
    return sql.run("SELECT * FROM tasks WHERE user_id = :u ORDER BY id", u=user)


# ---------------------------------------------------------------------------- parent_id


def test_a_new_subtask_goes_last_among_its_siblings_and_the_list_filters_by_parent(api, alice, bob):
    top = api.create_task(alice, title="trip")
    first, second = _sub(api, alice, top, "book"), _sub(api, alice, top, "pack")
    other = api.create_task(alice, title="other top")
    assert first["parent_id"] == top["id"] and first["position"] < second["position"]
    assert second["position"] == generate_key_between(first["position"], None)  # the library's key after the last
    assert _children(api, alice, top["id"]) == ["book", "pack"]
    assert _children(api, alice, None) == ["trip", "other top"]
    assert other["parent_id"] is None
    assert _children(api, bob, top["id"]) == []  # another user's id lists nothing


@pytest.mark.parametrize("whose", ["another user's", "unknown", "trashed"])
def test_a_parent_that_is_not_a_live_task_of_the_callers_is_422_naming_parent_id(api, alice, bob, sql, whose):
    mine = api.create_task(alice, title="mine")
    parent = {
        "another user's": lambda: api.create_task(bob, title="bob's")["id"],
        "unknown": lambda: str(uuid.uuid4()),
        "trashed": lambda: (t := api.create_task(alice, title="gone"), api.delete(f"/api/me/tasks/{t['id']}", user=alice))[0]["id"],
    }[whose]()
    before = _rows(sql, alice)
    _refused(api.post("/api/me/tasks", user=alice, json={"title": "x", "parent_id": parent}), "parent_id")
    _refused(api.patch(f"/api/me/tasks/{mine['id']}", user=alice, json={"parent_id": parent}), "parent_id")
    _refused(api.post(f"/api/me/tasks/{mine['id']}/move", user=alice, json={"parent_id": parent, "after": None}), "parent_id")
    assert _rows(sql, alice) == before


def test_depth_is_at_most_five_counting_the_top_task(api, alice):
    chain = [api.create_task(alice, title="level 1")]
    for level in range(2, 6):
        chain.append(_sub(api, alice, chain[-1], f"level {level}"))
    msg = _refused(api.post("/api/me/tasks", user=alice, json={"title": "level 6", "parent_id": chain[-1]["id"]}), "parent_id")
    assert "5" in msg
    # A subtree moved under a deeper task counts its own levels too.
    pair = api.create_task(alice, title="pair")
    _sub(api, alice, pair, "pair child")
    assert _move(api, alice, pair, parent=chain[2]).status == 200  # pair at 4, its child at 5
    _refused(_move(api, alice, pair, parent=chain[3]), "parent_id")  # its child would be at 6
    _refused(api.patch(f"/api/me/tasks/{pair['id']}", user=alice, json={"parent_id": chain[4]["id"]}), "parent_id")


def test_a_task_cannot_go_under_itself_or_its_own_subtasks(api, alice, sql):
    a = api.create_task(alice, title="a")
    b = _sub(api, alice, a, "b")
    c = _sub(api, alice, b, "c")
    for parent in (a, b, c):
        assert "cycle" in _refused(_move(api, alice, a, parent=parent), "parent_id")
    assert "cycle" in _refused(api.patch(f"/api/me/tasks/{a['id']}", user=alice, json={"parent_id": c["id"]}), "parent_id")
    assert sql.run("SELECT parent_id FROM tasks WHERE id = CAST(:a AS uuid)", a=a["id"]) == [[None]]


def test_two_concurrent_moves_that_together_make_a_cycle_never_both_succeed(api, alice, sql):
    """Each alone is fine (A under B, B under A); together they would make a cycle. The
    user's lock orders them: the second sees the first and is refused."""
    for _ in range(15):
        a, b = api.create_task(alice, title="a"), api.create_task(alice, title="b")
        replies = concurrently(2, lambda i: _move(api, alice, (a, b)[i], parent=(b, a)[i]))
        assert sorted(r.status for r in replies) == [200, 422], [r.body for r in replies]
        parents = dict(sql.run("SELECT id::text, parent_id::text FROM tasks WHERE id::text IN (:a, :b)", a=a["id"], b=b["id"]))
        assert [parents[a["id"]], parents[b["id"]]].count(None) == 1, parents


def test_three_concurrent_moves_around_a_ring_leave_no_cycle(api, alice, sql):
    for _ in range(8):
        ring = [api.create_task(alice, title=f"r{i}") for i in range(3)]
        replies = concurrently(3, lambda i: _move(api, alice, ring[i], parent=ring[(i + 1) % 3]))
        assert sorted(r.status for r in replies) == [200, 200, 422], [r.body for r in replies]


def test_at_most_200_direct_subtasks(api, alice, sql):
    parent = api.create_task(alice, title="full")
    sql.run(
        """
        INSERT INTO tasks (id, user_id, title, parent_id, position, created_at, updated_at)
        SELECT gen_random_uuid(), :u, 'child ' || i, CAST(:p AS uuid), position_of_rank(i), now(), now()
        FROM generate_series(0, 198) AS i
        """,
        u=alice,
        p=parent["id"],
    )
    last = _sub(api, alice, parent, "the 200th")
    assert _children(api, alice, parent["id"])[-1] == "the 200th"
    assert "200" in _refused(api.post("/api/me/tasks", user=alice, json={"title": "201", "parent_id": parent["id"]}), "parent_id")
    loose = api.create_task(alice, title="loose")
    _refused(_move(api, alice, loose, parent=parent), "parent_id")
    assert api.delete(f"/api/me/tasks/{last['id']}", user=alice).status == 204  # a trashed one leaves room
    assert _move(api, alice, loose, parent=parent).status == 200


# ---------------------------------------------------------------------------- move


def test_move_puts_the_task_right_after_its_sibling_or_first_and_says_where(api, alice):
    parent = api.create_task(alice, title="p")
    a, b, c = (_sub(api, alice, parent, t) for t in "abc")
    reply = _move(api, alice, c, parent=parent, after=a, headers={"if-match": f'"{c["version"]}"'})
    assert reply.status == 200, reply.body
    moved = reply.json()
    assert moved["version"] == c["version"] + 1 and reply.headers["etag"] == f'"{moved["version"]}"'
    assert a["position"] < moved["position"] < b["position"]
    assert _children(api, alice, parent["id"]) == ["a", "c", "b"]
    assert _move(api, alice, b, parent=parent).status == 200  # after null: first
    assert _children(api, alice, parent["id"]) == ["b", "a", "c"]
    top = _move(api, alice, a).json()  # to the top level, first there
    assert top["parent_id"] is None and _children(api, alice, None)[0] == "a"
    assert _children(api, alice, parent["id"]) == ["b", "c"]


def test_a_move_to_where_the_task_already_is_changes_nothing(api, alice):
    parent = api.create_task(alice, title="p")
    a, b = _sub(api, alice, parent, "a"), _sub(api, alice, parent, "b")
    reply = _move(api, alice, b, parent=parent, after=a)
    assert reply.status == 200 and reply.json() == api.get(f"/api/me/tasks/{b['id']}", user=alice).json()
    assert reply.json()["version"] == b["version"] and reply.json()["updated_at"] == b["updated_at"]
    assert _move(api, alice, a, parent=parent).json()["version"] == a["version"]  # first already


def test_after_must_be_a_live_child_of_that_parent(api, alice, bob, sql):
    parent, elsewhere = api.create_task(alice, title="p"), api.create_task(alice, title="elsewhere")
    a, task = _sub(api, alice, parent, "a"), _sub(api, alice, parent, "task")
    trashed = _sub(api, alice, parent, "trashed")
    api.delete(f"/api/me/tasks/{trashed['id']}", user=alice)
    bobs = api.create_task(bob, title="bob's")
    before = _rows(sql, alice)
    for after in (elsewhere, trashed, bobs, task, {"id": str(uuid.uuid4())}):  # not a child there, or the task itself
        _refused(_move(api, alice, task, parent=parent, after=after), "after")
    _refused(_move(api, alice, task, parent=None, after=a), "after")  # a child of p, not a top-level task
    assert _rows(sql, alice) == before


def test_a_stale_if_match_is_412_and_moves_nothing(api, alice, sql):
    a, b = api.create_task(alice, title="a"), api.create_task(alice, title="b")
    before = _rows(sql, alice)
    reply = _move(api, alice, b, after=None, headers={"if-match": '"7"'})
    assert reply.status == 412 and reply.headers["etag"] == f'"{b["version"]}"'
    assert _rows(sql, alice) == before


def test_moving_3000_times_between_the_same_two_siblings_keeps_keys_short(api, alice, sql, capsys):
    """Two tasks moved in turn right after the same sibling: each key halves the gap, so
    without a bound they grow ~1 character per 6 moves (~500 by the end). Past
    POSITION_BOUND a window of siblings is respaced (decision 0010)."""
    parent = api.create_task(alice, title="p")
    first, x, y, last = (_sub(api, alice, parent, t) for t in ("first", "x", "y", "last"))
    longest, respaced = 0, 0
    for i in range(3000):
        moved = (x, y)[i % 2]
        reply = _move(api, alice, moved, parent=parent, after=first)
        assert reply.status == 200, reply.body
        key = reply.json()["position"]
        longest = max(longest, len(key))
        keys = dict(sql.run("SELECT title, position FROM tasks WHERE parent_id = CAST(:p AS uuid)", p=parent["id"]))
        respaced += keys["first"] != first["position"]
        first["position"] = keys["first"]
        expected = ["first", "x", "y", "last"] if moved is x else ["first", "y", "x", "last"]
        assert sorted(keys, key=lambda title: keys[title].encode()) == expected, (i, keys)
    assert longest <= POSITION_BOUND
    assert _children(api, alice, parent["id"]) == ["first", "y", "x", "last"]  # y moved last
    with capsys.disabled():
        print(f"\n3,000 moves between two siblings: longest key {longest} characters (bound {POSITION_BOUND}), first sibling respaced {respaced} times")


def test_another_users_task_cannot_be_moved_nor_moved_under(api, alice, bob, sql):
    mine, bobs = api.create_task(alice, title="mine"), api.create_task(bob, title="bob's")
    before = _rows(sql, bob)
    assert _move(api, alice, bobs).status == 404
    _refused(_move(api, alice, mine, parent=bobs), "parent_id")
    assert _rows(sql, bob) == before


# ---------------------------------------------------------------------------- cascades


def _tree(api, user):
    """top > (a > (a1, a2), b); returns them by name."""
    top = api.create_task(user, title="top")
    a, b = _sub(api, user, top, "a"), _sub(api, user, top, "b")
    a1, a2 = _sub(api, user, a, "a1"), _sub(api, user, a, "a2")
    return {"top": top, "a": a, "b": b, "a1": a1, "a2": a2}


def _state(sql, tasks: dict) -> dict[str, tuple]:
    rows = sql.run(
        "SELECT title, deleted_at IS NOT NULL, completed, version, parent_id::text FROM tasks WHERE id::text = ANY(:ids)",
        ids=[t["id"] for t in tasks.values()],
    )
    return {title: tuple(rest) for title, *rest in rows}


def test_trashing_trashes_the_subtree_and_restoring_brings_back_only_what_went_with_it(api, alice, bob, sql):
    mine, bobs = _tree(api, alice), _tree(api, bob)
    bob_before = _rows(sql, bob)
    assert api.delete(f"/api/me/tasks/{mine['a2']['id']}", user=alice).status == 204  # trashed on its own first
    assert api.delete(f"/api/me/tasks/{mine['top']['id']}", user=alice).status == 204
    state = _state(sql, mine)
    assert all(trashed for trashed, *_ in state.values()), state
    assert {title: version for title, (_, _, version, _) in state.items()} == {"top": 2, "a": 2, "b": 2, "a1": 2, "a2": 2}
    assert api.get(f"/api/me/tasks/{mine['a1']['id']}", user=alice).status == 404
    trash = {item["title"] for item in api.get("/api/me/trash", user=alice).json()["items"]}
    assert trash == {"top", "a", "b", "a1", "a2"}

    reply = api.post(f"/api/me/trash/{mine['top']['id']}/restore", user=alice)
    assert reply.status == 200, reply.body
    state = _state(sql, mine)
    assert {title for title, (trashed, *_) in state.items() if trashed} == {"a2"}  # trashed before: stays
    assert state["a1"][2] == 3 and state["a1"][3] == mine["a"]["id"]
    assert _children(api, alice, mine["a"]["id"]) == ["a1"]
    # And a2 comes back under a, which is live again.
    assert api.post(f"/api/me/trash/{mine['a2']['id']}/restore", user=alice).json()["parent_id"] == mine["a"]["id"]
    assert _children(api, alice, mine["a"]["id"]) == ["a1", "a2"]
    assert _rows(sql, bob) == bob_before and bobs


def test_restoring_a_subtask_whose_parent_is_still_in_the_trash_puts_it_at_the_top_level(api, alice):
    tree = _tree(api, alice)
    api.delete(f"/api/me/tasks/{tree['top']['id']}", user=alice)
    reply = api.post(f"/api/me/trash/{tree['a']['id']}/restore", user=alice)
    assert reply.status == 200 and reply.json()["parent_id"] is None
    assert _children(api, alice, None)[-1] == "a"
    assert _children(api, alice, tree["a"]["id"]) == ["a1", "a2"]  # what went with it comes with it
    assert api.get(f"/api/me/tasks/{tree['b']['id']}", user=alice).status == 404  # b stays in the trash


def test_completing_completes_the_open_subtree_and_nothing_of_anyone_else(api, alice, bob, sql):
    mine, bobs = _tree(api, alice), _tree(api, bob)
    api.patch(f"/api/me/tasks/{mine['a1']['id']}/complete", user=alice, json={"completed": True})
    bob_before = _rows(sql, bob)
    reply = api.patch(f"/api/me/tasks/{mine['top']['id']}/complete", user=alice, json={"completed": True})
    assert reply.status == 200 and reply.json()["completed"]
    state = _state(sql, mine)
    assert all(completed for _, completed, *_ in state.values()), state
    assert state["a1"][2] == 2  # already completed: left as it was
    assert {state[t][2] for t in ("a", "b", "a2")} == {2}
    assert _rows(sql, bob) == bob_before and bobs
    # Un-completing the parent leaves its subtasks as they are.
    api.patch(f"/api/me/tasks/{mine['top']['id']}/complete", user=alice, json={"completed": False})
    assert _state(sql, mine)["a"][1] is True


def test_a_recurring_subtask_completed_with_its_parent_gets_its_successor_under_that_parent(api, alice, sql):
    parent = api.create_task(alice, title="weekly review project")
    chore = _sub(api, alice, parent, "water plants", recurrence="FREQ=DAILY", due_at="2030-01-01T09:00:00Z")
    reply = api.patch(f"/api/me/tasks/{parent['id']}", user=alice, json={"completed": True})
    assert reply.status == 200, reply.body
    rows = sql.run("SELECT id::text, parent_id::text, completed, due_at FROM tasks WHERE successor_of = CAST(:c AS uuid)", c=chore["id"])
    assert len(rows) == 1 and rows[0][1] == parent["id"] and rows[0][2] is False
    assert _children(api, alice, parent["id"]) == ["water plants", "water plants"]  # the done one, then its successor


def test_put_without_parent_id_moves_a_subtask_to_the_top_level_last(api, alice):
    parent = api.create_task(alice, title="p")
    sub = _sub(api, alice, parent, "sub")
    reply = api.put(f"/api/me/tasks/{sub['id']}", user=alice, json={"title": "sub"})
    assert reply.status == 200 and reply.json()["parent_id"] is None
    assert _children(api, alice, None) == ["p", "sub"]
    assert api.patch(f"/api/me/tasks/{sub['id']}", user=alice, json={"parent_id": parent["id"]}).json()["parent_id"] == parent["id"]
    assert _children(api, alice, parent["id"]) == ["sub"]


# ---------------------------------------------------------------------------- the change log


def test_moves_respaces_and_cascades_each_append_to_the_change_log(api, sql, alice, bob):
    """The change log's triggers (migration 0008) see every row these writes change: one
    entry per task whose version moved, in the write's own transaction; bob's log untouched."""
    from tests.functions.test_changes import log_of

    def entries(action) -> list[tuple[str, str]]:
        before = len(log_of(sql, alice))
        action()
        return sorted((object_id, action) for _, kind, object_id, action in log_of(sql, alice)[before:] if kind == "task")

    tree = _tree(api, alice)
    ids = {name: task["id"] for name, task in tree.items()}
    bobs_before = log_of(sql, bob)
    assert entries(lambda: _move(api, alice, tree["b"], parent=tree["top"])) == [(ids["b"], "updated")]  # b first
    assert entries(lambda: _move(api, alice, tree["b"], parent=tree["top"])) == []  # already there: nothing
    assert entries(lambda: api.delete(f"/api/me/tasks/{ids['a']}", user=alice)) == sorted(
        [(ids["a"], "deleted"), (ids["a1"], "deleted"), (ids["a2"], "deleted")]
    )
    assert entries(lambda: api.post(f"/api/me/trash/{ids['a']}/restore", user=alice)) == sorted(
        [(ids["a"], "restored"), (ids["a1"], "restored"), (ids["a2"], "restored")]
    )
    assert entries(lambda: api.patch(f"/api/me/tasks/{ids['top']}/complete", user=alice, json={"completed": True})) == sorted(
        [(ids[name], "completed") for name in ("top", "a", "b", "a1", "a2")]
    )
    # A respace: every sibling whose key changed is an entry too.
    parent = api.create_task(alice, title="p")
    first, x, y = (_sub(api, alice, parent, t) for t in ("first", "x", "y"))
    for i in range(400):
        moved = (x, y)[i % 2]
        keys_before = dict(sql.run("SELECT id::text, position FROM tasks WHERE parent_id = CAST(:p AS uuid)", p=parent["id"]))
        logged = entries(lambda: _move(api, alice, moved, parent=parent, after=first))
        keys_after = dict(sql.run("SELECT id::text, position FROM tasks WHERE parent_id = CAST(:p AS uuid)", p=parent["id"]))
        changed = sorted(task_id for task_id in keys_after if keys_after[task_id] != keys_before[task_id])
        assert logged == [(task_id, "updated") for task_id in changed], i
        if len(changed) > 1:  # the moved task and a respaced sibling
            break
    else:
        raise AssertionError("no respace in 400 moves")
    assert log_of(sql, bob) == bobs_before
