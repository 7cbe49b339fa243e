"""The PagerDuty channel: alert events of the Events API v2 (``POST /v2/enqueue``).

One incident is one PagerDuty alert, whatever the number of events sent about it: every event
carries the same ``dedup_key`` (:func:`page_key`, from the incident's id and opening time), so
a resend after a timeout or a crash lands on the same alert, and an acknowledge or resolve
finds the alert its trigger opened. Which event does what (:data:`PAGERDUTY_ACTIONS`):

- ``opened``: ``trigger``, with the summary, ``source`` (``[notifications.pagerduty] source``),
  the severity (sev1 ``critical``, sev2 ``error``, sev3 ``warning``, sev4 ``info``),
  ``component`` (the asset), ``class`` (the incident type), ``custom_details`` (the incident's
  facts) and, with ``review_url``, a link to the review;
- ``failed``: ``trigger`` again (the playbook could not finish; the alert stays or is opened);
- ``acknowledged``: ``acknowledge``, when a named approver decided an approval of the
  playbook (approve or deny): a person is working on it;
- ``resolved``: ``resolve``, when a person resolves the incident; ``recovered`` too with
  ``resolve_on_recovered``.

PagerDuty answers 202 when it accepted the event; 400 (an invalid event) is permanent; 429 and
5xx are retried by the outbox with its backoff, or after ``Retry-After`` when PagerDuty sends
it; a network error is retried. The routing key is only ever in the request body: the outbox,
receipts, errors and the timeline name it by its label (``routing.routing_key_label``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from rearguard.notifications.channels.base import Delivery, DeliveryError, Message, Receipt
from rearguard.notifications.channels.webhook import SHARED_CLIENT_LIMITS, retry_after
from rearguard.notifications.routing import PAGERDUTY_ACTIONS

SEVERITIES = {"sev1": "critical", "sev2": "error", "sev3": "warning", "sev4": "info"}
SUMMARY_MAX = 1024
DETAILS_MAX = 8000
_ERROR_MAX = 300
_REDACTED_KEY = "[REDACTED:routing-key]"


def page_key(incident: Mapping[str, Any]) -> str:
    """The ``dedup_key`` of an incident's page: the same for every event about it, and
    different for two incidents (the id with the opening time, so that two databases' incident
    1 are two alerts)."""
    return f"rearguard-incident-{incident.get('id')}-{incident.get('opened_at')}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _summary(message: Message) -> str:
    first = message.body.strip().splitlines()[0].strip() if message.body.strip() else ""
    return _cut(f"{message.title}: {first}" if first else message.title, SUMMARY_MAX)


class PagerDutyChannel:
    """POSTs Events API v2 alert events.

    Args:
        events_url: where to POST (PagerDuty's ``/v2/enqueue``, or a proxy).
        routing_keys: each routing key by its label (the outbox row's destination); None for
            a label whose key is not available (an ``env:NAME`` whose variable is unset).
        source: the affected system, as PagerDuty shows it.
        review_url: a link to an incident's review, ``{id}`` replaced by its id, or None.
        timeout_s: seconds to wait for the answer.
    """

    name = "pagerduty"

    def __init__(
        self,
        *,
        events_url: str,
        routing_keys: Mapping[str, str | None],
        source: str,
        review_url: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.events_url = events_url
        self._keys = dict(routing_keys)
        self.source = source
        self.review_url = review_url
        self.client = httpx.Client(
            timeout=timeout_s, follow_redirects=False, limits=SHARED_CLIENT_LIMITS
        )

    def event(self, message: Message, delivery: Delivery, *, routing_key: str) -> dict[str, Any]:
        """The Events API v2 body for one delivery.

        Raises:
            DeliveryError: the event is not one PagerDuty takes (permanent).
        """
        action = PAGERDUTY_ACTIONS.get(delivery.event)
        if action is None:
            raise DeliveryError(
                f"pagerduty: the {delivery.event} event pages nobody", permanent=True
            )
        incident: dict[str, Any] = message.context.get("incident") or {}
        body: dict[str, Any] = {
            "routing_key": routing_key,
            "event_action": action,
            "dedup_key": page_key(incident),
        }
        if action != "trigger":
            return body  # acknowledge and resolve carry the key and the dedup key only
        links = []
        if self.review_url:
            href = self.review_url.replace("{id}", str(incident.get("id")))
            links.append({"href": href, "text": f"Incident {incident.get('id')} review"})
        payload: dict[str, Any] = {
            "summary": _summary(message),
            "source": self.source,
            "severity": SEVERITIES.get(str(incident.get("severity")), "error"),
            "timestamp": delivery.created_at.isoformat(timespec="milliseconds"),
            "class": incident.get("type") or "incident",
            "custom_details": {
                "incident": incident.get("id"),
                "event": delivery.event,
                "type": incident.get("type"),
                "severity": incident.get("severity"),
                "status": incident.get("status"),
                "asset": incident.get("asset"),
                "production": message.context.get("production"),
                "source": incident.get("source"),
                "opened_by": incident.get("opened_by"),
                "opened_at": incident.get("opened_at"),
                "since": incident.get("since"),
                "atlas_ids": incident.get("atlas_ids") or [],
                "summary": incident.get("summary"),
                "reason": incident.get("reason"),
                "details": _cut(message.body, DETAILS_MAX),
                "show": message.context.get("command"),
            },
        }
        if incident.get("asset"):
            payload["component"] = incident["asset"]
        body.update(payload=payload, client="rearguard")
        if links:
            body.update(links=links, client_url=links[0]["href"])
        return body

    def send(self, message: Message, delivery: Delivery) -> Receipt:
        """POST the event for the row's routing key."""
        if delivery.destination not in self._keys:
            raise DeliveryError(
                f"pagerduty: routing key {delivery.destination} is no longer configured",
                permanent=True,
            )
        routing_key = self._keys[delivery.destination]
        if not routing_key:
            raise DeliveryError(
                f"pagerduty: routing key {delivery.destination} is empty or unset", permanent=True
            )
        event = self.event(message, delivery, routing_key=routing_key)
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        try:
            response = self.client.post(self.events_url, content=body, headers=headers)
        except httpx.ConnectError as exc:
            raise DeliveryError(f"pagerduty: cannot connect: {self._clean(str(exc))}") from exc
        except httpx.HTTPError as exc:
            # PagerDuty may have taken it: the resend has the same dedup_key, the same alert.
            raise DeliveryError(
                f"pagerduty: {type(exc).__name__}: {self._clean(str(exc))}", in_doubt=True
            ) from exc
        status = response.status_code
        if 200 <= status < 300:
            answer = _json(response)
            dedup_key = answer.get("dedup_key") or event["dedup_key"]
            return Receipt(
                {"status": status, "action": event["event_action"], "dedup_key": dedup_key}
            )
        error = f"pagerduty: HTTP {status}{self._explain(response)}"
        if status == 429 or status >= 500:
            raise DeliveryError(
                error,
                retry_after=retry_after(response.headers.get("Retry-After")),
                in_doubt=status >= 500,
            )
        raise DeliveryError(error, permanent=True)

    def _explain(self, response: httpx.Response) -> str:
        """PagerDuty's own words on a refusal (``message`` and ``errors``), cut short."""
        answer = _json(response)
        words = [str(answer.get("message") or "")]
        errors = answer.get("errors")
        if isinstance(errors, list):
            words += [str(e) for e in errors]
        text = "; ".join(w for w in words if w)
        return f": {self._clean(_cut(text, _ERROR_MAX))}" if text else ""

    def _clean(self, text: str) -> str:
        """A text for the timeline: no routing key in it, whatever a proxy echoed."""
        for key in self._keys.values():
            if key:
                text = text.replace(key, _REDACTED_KEY)
        return text

    def find_sent(self, delivery: Delivery) -> Receipt | None:
        """PagerDuty cannot be asked; a resend has the same dedup_key and joins the same
        alert."""
        return None

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        found = response.json()
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
