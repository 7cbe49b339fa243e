"""The ``/rearguard`` Slack slash command: ``[slack_commands]``, ``REARGUARD_SLACK_COMMANDS_*``.

Who the Slack user is comes from ``[approvals.slack_users]`` (the mapping the Approve and Deny
buttons use); what that person may do from Slack comes from ``allow`` here. Reading
(``status``, ``list``) is open to every mapped person, and approving follows the approval
rules, as from any other channel.
"""

from __future__ import annotations

from typing import ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import SettingsConfigDict

from rearguard.models.config.approvals import ApprovalSettings
from rearguard.models.config.base import ConcernSettings

EVERYONE = "*"
"""In an ``allow`` list: every person ``[approvals.slack_users]`` maps."""

Permission = Literal["open", "drill"]
RESPONSE_CHANNEL = "slack_response"
"""The outbox channel that posts to a command's ``response_url``."""


def shown_destination(channel: str, destination: str) -> str:
    """An outbox destination as receipts, timelines and listings show it: a response_url is a
    capability to post to a person (for 30 minutes), so it is never shown."""
    return "response_url" if channel == RESPONSE_CHANNEL else destination


class SlackCommandAllow(BaseModel):
    """Who may do what from Slack: names, groups of ``[approvals.groups]``, or ``*``."""

    model_config = ConfigDict(extra="forbid")
    open: list[str] = Field(default_factory=list, description="who may open incidents")
    drill: list[str] = Field(default_factory=list, description="who may run drills")


class SlackCommandSettings(ConcernSettings):
    """The slash command (``[slack_commands]``): who may open incidents and run drills from
    Slack, and where its later answers may be posted."""

    toml_table: ClassVar[str] = "slack_commands"
    model_config = SettingsConfigDict(env_prefix="REARGUARD_SLACK_COMMANDS_", extra="ignore")
    allow: SlackCommandAllow = Field(
        default_factory=SlackCommandAllow,
        description="who may open and who may drill; nobody unless listed",
    )
    response_url_prefix: str = Field(
        default="https://hooks.slack.com/",
        description="a command's response_url is used only when it starts with this "
        "(another value only for a Slack-compatible gateway or a test server)",
    )

    @field_validator("response_url_prefix")
    @classmethod
    def _a_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.netloc or not parts.path:
            raise ValueError("must be an http(s) URL with a path, e.g. https://hooks.slack.com/")
        if not parts.path.endswith("/") or parts.query or parts.fragment or "@" in parts.netloc:
            # Without the slash, https://hooks.slack.com would also match hooks.slack.com.evil.
            raise ValueError("must end with '/' and carry no user, query or fragment")
        return value

    def allows(self, permission: Permission, person: str, *, groups: ApprovalSettings) -> bool:
        """Whether ``person`` may ``open`` incidents or run a ``drill`` from Slack."""
        listed = getattr(self.allow, permission)
        return EVERYONE in listed or person in groups.expand(listed)

    def may_post_to(self, url: str) -> bool:
        """Whether a response_url from a request may be posted to: under the prefix, on its
        host, with no user part or whitespace (never an address the request chose freely)."""
        if not url.startswith(self.response_url_prefix) or any(c.isspace() for c in url):
            return False
        parts, base = urlsplit(url), urlsplit(self.response_url_prefix)
        return (parts.scheme, parts.netloc) == (base.scheme, base.netloc)
