"""rearguard reads the user's Prefect API URL without importing Prefect: it must find the same
URL Prefect itself would, from every source Prefect reads, in Prefect's order. Prefect (run in
a subprocess, so its settings are read afresh for each case) is the oracle."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Each case: the files of a working directory (and of its Prefect home), and environment
# variables. Where several sources name a URL, the case says which one must win.
_PROFILES = '[profiles.team]\nPREFECT_API_URL = "http://profile:4200/api"\n'
CASES: dict[str, dict[str, object]] = {
    "nothing": {"files": {}},
    "dotenv": {"files": {".env": "PREFECT_API_URL=http://dotenv:4200/api\n"}},
    "prefect_toml": {"files": {"prefect.toml": '[api]\nurl = "http://toml:4200/api"\n'}},
    "pyproject": {
        "files": {"pyproject.toml": '[tool.prefect.api]\nurl = "http://pyproject:4200/api"\n'}
    },
    "active_profile": {"files": {"home/profiles.toml": 'active = "team"\n' + _PROFILES}},
    "named_profile": {
        "files": {"home/profiles.toml": _PROFILES},
        "env": {"PREFECT_PROFILE": "team"},
    },
    "profiles_path_in_prefect_toml": {
        "files": {
            "elsewhere/p.toml": 'active = "team"\n' + _PROFILES,
            "prefect.toml": 'profiles_path = "elsewhere/p.toml"\n',
        }
    },
    "dotenv_before_prefect_toml": {
        "files": {
            ".env": "PREFECT_API_URL='http://dotenv:4200/api'\n",
            "prefect.toml": 'api.url = "http://toml:4200/api"\n',
        }
    },
    "prefect_toml_before_pyproject_and_profile": {
        "files": {
            "prefect.toml": '[api]\nurl = "http://toml:4200/api"\n',
            "pyproject.toml": '[tool.prefect.api]\nurl = "http://pyproject:4200/api"\n',
            "home/profiles.toml": 'active = "team"\n' + _PROFILES,
        }
    },
    "environment_first": {
        "files": {".env": "PREFECT_API_URL=http://dotenv:4200/api\n"},
        "env": {"PREFECT_API_URL": "http://environment:4200/api"},
    },
    "broken_prefect_toml_is_refused": {"files": {"prefect.toml": "[api\nurl="}},
    "broken_pyproject_is_refused": {"files": {"pyproject.toml": "[tool.prefect.api]\nurl="}},
    "broken_profiles_count_as_none": {"files": {"home/profiles.toml": "active = "}},
}

_ORACLE = """
import json, os, sys
from prefect.settings.models.root import Settings
from rearguard.flows.prefect_infra.api_url import configured_api_url

results = {}
for case in json.loads(sys.argv[1]):
    os.chdir(case["dir"])
    for name in ("PREFECT_API_URL", "PREFECT_PROFILE"):
        os.environ.pop(name, None)
    os.environ.update(case["env"], PREFECT_HOME=os.path.join(case["dir"], "home"))
    try:
        prefect = Settings().api.url
    except Exception as exc:  # Prefect refuses the files: so must rearguard
        prefect = "refused"
    try:
        ours = configured_api_url()
    except Exception as exc:
        ours = "refused"
    results[case["name"]] = {"prefect": prefect, "rearguard": ours}
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str | None]]:
    root = tmp_path_factory.mktemp("prefect-sources")
    cases = []
    for name, case in CASES.items():
        directory = root / name
        (directory / "home").mkdir(parents=True)
        for relative, text in case["files"].items():  # type: ignore[attr-defined]
            (directory / relative).parent.mkdir(parents=True, exist_ok=True)
            (directory / relative).write_text(text, encoding="utf-8")
        cases.append({"name": name, "dir": str(directory), "env": case.get("env", {})})
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    done = subprocess.run(
        [sys.executable, "-c", _ORACLE, json.dumps(cases)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_api_url_rearguard_finds_is_the_one_prefect_uses(
    answers: dict[str, dict[str, str | None]], case: str
) -> None:
    assert answers[case]["rearguard"] == answers[case]["prefect"]


def test_each_source_names_its_own_url(answers: dict[str, dict[str, str | None]]) -> None:
    """The cases exercise what they say (else the comparison above proves little)."""
    found = {name: answer["prefect"] for name, answer in answers.items()}
    assert found["nothing"] is None
    assert found["dotenv"] == found["dotenv_before_prefect_toml"] == "http://dotenv:4200/api"
    assert found["prefect_toml"] == "http://toml:4200/api"
    assert found["prefect_toml_before_pyproject_and_profile"] == "http://toml:4200/api"
    assert found["pyproject"] == "http://pyproject:4200/api"
    assert found["active_profile"] == found["named_profile"] == "http://profile:4200/api"
    assert found["profiles_path_in_prefect_toml"] == "http://profile:4200/api"
    assert found["environment_first"] == "http://environment:4200/api"
    assert found["broken_prefect_toml_is_refused"] == "refused"
    assert found["broken_pyproject_is_refused"] == "refused"
    assert found["broken_profiles_count_as_none"] is None
