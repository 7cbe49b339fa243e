"""The runtime a run binds: seen by its own code and threads, never by another run's."""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import pytest

from rearguard.models.errors import RuntimeNotBound
from rearguard.models.runtime import Runtime, bound, bound_runtime, current_runtime


def test_code_outside_any_run_is_told_so_instead_of_finding_a_runtime(runtime: Runtime) -> None:
    with bound_runtime(runtime):
        assert current_runtime() is runtime
    with pytest.raises(RuntimeNotBound, match="no runtime is bound here") as raised:
        current_runtime()
    assert raised.value.hint and "run_playbook" in raised.value.hint
    assert bound() is None


def test_each_run_sees_its_own_runtime_in_its_tasks_and_worker_threads(runtime: Runtime) -> None:
    sandbox = dataclasses.replace(runtime, drill=True)  # another run's runtime
    both_bound = threading.Barrier(2, timeout=30)
    seen: dict[str, list[Runtime | None]] = {"app": [], "drill": []}

    async def steps(name: str) -> None:
        seen[name].append(current_runtime())
        both_bound.wait()  # the two runs are bound at the same time, in two threads
        seen[name].append(await asyncio.to_thread(current_runtime))
        seen[name].append(await asyncio.create_task(asyncio.to_thread(bound)))

    def run(name: str, mine: Runtime) -> None:
        with bound_runtime(mine):
            asyncio.run(steps(name))

    threads = [
        threading.Thread(target=run, args=("app", runtime)),
        threading.Thread(target=run, args=("drill", sandbox)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert seen["app"] == [runtime] * 3
    assert seen["drill"] == [sandbox] * 3
    assert bound() is None  # nothing leaked into the test's own thread


def test_a_nested_binding_ends_where_it_began(runtime: Runtime) -> None:
    inner = dataclasses.replace(runtime, drill=True)
    with bound_runtime(runtime):
        with bound_runtime(inner):
            assert current_runtime() is inner
        assert current_runtime() is runtime
