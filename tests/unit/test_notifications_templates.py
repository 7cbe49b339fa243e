"""Rendering notifications: built-in templates, user overrides, the sandbox, Slack's limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rearguard.notifications.channels.slack_limits import (
    BLOCKS_MAX,
    FIELD_TEXT_MAX,
    HEADER_MAX,
    SECTION_TEXT_MAX,
    fit_blocks,
)
from rearguard.notifications.templates import EVENTS, Renderer, TemplateError

BOTH = frozenset({"slack", "html"})


def context(**changes: Any) -> dict[str, Any]:
    incident = {
        "id": 7,
        "type": "model_compromise",
        "severity": "sev1",
        "status": "recovered",
        "asset": "fraud-model",
        "summary": "scores shifted overnight",
        "reason": None,
        "source": "cli",
        "opened_by": "oncall",
        "opened_at": "2026-11-25T03:00:00+00:00",
        "since": None,
        "atlas_ids": ["AML.T0018"],
        "state": {"compromised": "v3", "selected": "v2"},
    }
    incident.update(changes.pop("incident", {}))
    return {
        "event": "recovered",
        "incident": incident,
        "alias": "production",
        "production": "v2",
        "drill": False,
        "mentions": [],
        "command": "rearguard incident show 7",
        "extra": {},
        **changes,
    }


@pytest.mark.parametrize("event", EVENTS)
def test_every_event_renders_a_title_text_blocks_and_html(event: str) -> None:
    message = Renderer().render(event, context(event=event), formats=BOTH)

    assert message.title and "\n" not in message.title
    assert message.text.startswith(message.title)
    assert message.blocks[0]["type"] == "header"
    assert message.blocks[0]["text"]["text"] == message.title
    assert "<html>" in message.html or "<html" in message.html


def test_recovered_says_where_production_points_now() -> None:
    message = Renderer().render("recovered", context(), formats=BOTH)

    assert message.title == "Incident 7 recovered: fraud-model production -> v2"
    assert "in place of v3 (quarantined)" in message.body


def test_a_multi_asset_incident_names_its_assets_not_a_missing_one() -> None:
    supply_chain = {
        "type": "supply_chain",
        "asset": None,
        "state": {"digest": "ab" * 32, "selected_by_asset": {"rank": "v1", "fraud": "v2"}},
    }
    opened = Renderer().render(
        "opened", context(event="opened", incident={**supply_chain, "state": {"digest": "ab" * 32}})
    )
    recovered = Renderer().render("recovered", context(incident=supply_chain, production=None))

    assert opened.title == (
        "Incident 7 opened: supply_chain (sev1) on every asset holding digest abababababababab"
    )
    assert recovered.title == "Incident 7 recovered: 2 asset(s) (fraud, rank)"
    assert "production of fraud now serves v2.\nproduction of rank now serves v1." in recovered.body
    assert "(none)" not in recovered.body


def test_html_is_escaped_and_mrkdwn_is_escaped_for_slack() -> None:
    hostile = context(incident={"summary": "<img src=x onerror=alert(1)> & <@channel>"})

    message = Renderer().render("recovered", hostile, formats=BOTH)

    assert "<img" not in message.html
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; &lt;@channel&gt;" in message.html
    section = message.blocks[1]["text"]["text"]
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; &lt;@channel&gt;" in section
    # The plain text (console, email's text part) is the text as typed.
    assert "<img src=x onerror=alert(1)> & <@channel>" in message.text


def test_drills_are_marked_even_by_a_user_template_that_forgets(tmp_path: Path) -> None:
    (tmp_path / "recovered.txt.j2").write_text("All good on {{ incident.asset }}\n\nfine")

    message = Renderer(tmp_path).render("recovered", context(drill=True), formats=BOTH)

    assert message.title == "[DRILL] All good on fraud-model"
    assert message.blocks[0]["text"]["text"] == "[DRILL] All good on fraud-model"
    assert ">[DRILL]</span> All good on fraud-model</h2>" in message.html


def test_user_template_overrides_the_builtin_and_can_add_a_slack_layout(tmp_path: Path) -> None:
    (tmp_path / "failed.txt.j2").write_text("Call {{ extra.pager }} now\n\n{{ incident.reason }}")
    (tmp_path / "failed.slack.j2").write_text(
        '[{"type": "section", "text": {"type": "mrkdwn", "text": {{ body | mrkdwn | tojson }}}}]'
    )

    message = Renderer(tmp_path).render(
        "failed",
        context(event="failed", incident={"reason": "no known-good"}, extra={"pager": "x42"}),
        formats=BOTH,
    )

    assert message.title == "Call x42 now"
    assert message.blocks == [
        {"type": "section", "text": {"type": "mrkdwn", "text": "no known-good"}}
    ]
    # The other events keep the built-in templates.
    opened = Renderer(tmp_path).render("opened", context(event="opened"), formats=BOTH)
    assert opened.title.startswith("Incident 7 opened")


def test_an_undefined_variable_is_an_error_not_an_empty_string(tmp_path: Path) -> None:
    (tmp_path / "opened.txt.j2").write_text("Incident {{ incident.idd }}\n\nbody")

    with pytest.raises(TemplateError, match=r"opened.txt.j2.*idd"):
        Renderer(tmp_path).render("opened", context(event="opened"))


def test_a_user_template_cannot_reach_python_internals(tmp_path: Path) -> None:
    (tmp_path / "opened.txt.j2").write_text(
        "{{ ''.__class__.__mro__[1].__subclasses__() }}\n\nbody"
    )

    with pytest.raises(TemplateError, match="unsafe"):
        Renderer(tmp_path).render("opened", context(event="opened"))


def test_a_slack_template_that_renders_no_json_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "message.slack.j2").write_text("*{{ title }}*")

    with pytest.raises(TemplateError, match="did not render JSON"):
        Renderer(tmp_path).render("opened", context(event="opened"), formats=BOTH)


def test_fit_blocks_keeps_every_limit_and_says_where_the_rest_is() -> None:
    note = "(see rearguard incident show 7)"
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "H" * 400}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "&amp;" * 2000}},
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": "f" * 2500} for _ in range(14)],
        },
    ] + [{"type": "section", "text": {"type": "mrkdwn", "text": f"line {i}"}} for i in range(80)]

    fitted = fit_blocks(blocks, note=note)

    assert len(fitted) == BLOCKS_MAX
    assert len(fitted[0]["text"]["text"]) <= HEADER_MAX
    section = fitted[1]["text"]["text"]
    assert len(section) <= SECTION_TEXT_MAX and section.endswith(note)
    assert section.removesuffix("\n" + note).replace("&amp;", "") == ""
    assert len(fitted[2]["fields"]) == 10
    assert all(len(f["text"]) <= FIELD_TEXT_MAX for f in fitted[2]["fields"])
    assert fitted[-1]["type"] == "context" and note in fitted[-1]["elements"][0]["text"]
    assert "34 more blocks omitted" in json.dumps(fitted[-1])
    # The input is left as it was.
    assert len(blocks[0]["text"]["text"]) == 400


def test_approval_needed_on_slack_has_approve_and_deny_buttons_carrying_the_request() -> None:
    extra = {
        "what": "rollback fraud-model",
        "approvers": ["alice", "bob"],
        "command": "rearguard approve 7 --as NAME",
        "deny_command": "rearguard approve 7 --as NAME --deny --comment WHY",
        "callback_id": "apr-0123abcd",
    }
    message = Renderer().render(
        "approval_needed", context(event="approval_needed", extra=extra), formats=BOTH
    )

    assert message.title == "Incident 7: approval needed to rollback fraud-model"
    assert "Who can approve: alice, bob." in message.text
    assert "Approve with: rearguard approve 7 --as NAME" in message.text
    (actions,) = [b for b in message.blocks if b["type"] == "actions"]
    buttons = {e["action_id"]: e for e in actions["elements"]}
    assert sorted(buttons) == ["approve", "deny"]
    assert {b["value"] for b in buttons.values()} == {"apr-0123abcd"}
    assert buttons["deny"]["confirm"]["confirm"]["text"] == "Deny"
