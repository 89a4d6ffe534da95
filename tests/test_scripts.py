"""Lua script assembly: each script carries only the prelude helpers it uses, and still loads."""

from __future__ import annotations

import re

import pytest

from horizon import scripts


def _prelude_names() -> set[str]:
    return {name for name, _ in scripts._prelude_chunks()}


@pytest.mark.parametrize("name", scripts.script_names())
def test_every_script_loads_and_defines_each_helper_it_uses(name: str, redis_client) -> None:
    source = scripts.source(name)
    assert redis_client.script_load(source)
    defined = set(re.findall(r"^local function (\w+)|^local (\w+)\s*=", source, re.M))
    defined_names = {a or b for a, b in defined} | {f"K.{k}" for k in re.findall(r"^K\.(\w+) = function", source, re.M)}
    used = scripts._references(source) & _prelude_names()
    assert used <= defined_names, f"{name} uses {sorted(used - defined_names)} without defining them"


def test_scripts_leave_out_helpers_they_do_not_use() -> None:
    push, finish = scripts.source("push"), scripts.source("finish")
    assert "local function push_jobs" in push
    assert "local function finish_one" not in push
    assert "K.tag_failed = function" not in push
    assert "local function finish_one" in finish
    assert "local function push_jobs" not in finish
    # a script that touches no setting does not decode them
    assert "cjson.decode(ARGV[2])" not in scripts.source("page")
