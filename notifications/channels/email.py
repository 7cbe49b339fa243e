"""The email channel: SMTP with STARTTLS or implicit TLS and login; plain-text and HTML bodies.

Each outbox row is one message to one recipient, with ``Message-ID`` derived from the row's
idempotency key. SMTP offers no way to ask whether a message arrived, so a send in doubt (the
connection dropped after the data was sent, or the process died before recording) is not
repeated automatically: it is recorded as failed "in doubt" for a person to retry.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

from rearguard.notifications.channels.base import Delivery, DeliveryError, Message, Receipt


class EmailChannel:
    """Sends email through one SMTP server.

    Args:
        host: the server.
        port: its port (587 for STARTTLS, 465 for TLS, 25 for none).
        security: ``starttls``, ``tls`` or ``none``.
        username: the login, if the server needs one.
        password: its password (from the environment).
        sender: the From address.
        ca_file: a CA bundle to verify the server's certificate (the system's by default).
        timeout_s: seconds to wait for the server.
    """

    name = "email"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: str = "starttls",
        username: str | None = None,
        password: str | None = None,
        sender: str,
        ca_file: Path | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self._password = password
        self.sender = sender
        self.ca_file = ca_file
        self.timeout_s = timeout_s

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    def _connect(self) -> smtplib.SMTP:
        if self.security == "tls":
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout_s, context=self._tls()
            )
        connection = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        if self.security == "starttls":
            connection.starttls(context=self._tls())
        return connection

    def build(self, message: Message, delivery: Delivery) -> EmailMessage:
        """The email for one recipient: plain text, with the HTML body as an alternative."""
        email = EmailMessage()
        email["Subject"] = message.title
        email["From"] = self.sender
        email["To"] = delivery.destination
        email["Date"] = formatdate(localtime=False)
        domain = self.sender.rpartition("@")[2] or "rearguard"
        email["Message-ID"] = f"<{delivery.idempotency_key}@{domain}>"
        if delivery.incident_id is not None:
            email["X-Rearguard-Incident"] = str(delivery.incident_id)
        email.set_content(message.text)
        if message.html:
            email.add_alternative(message.html, subtype="html")
        return email

    def send(self, message: Message, delivery: Delivery) -> Receipt:
        """Connect, log in, send, and quit."""
        email = self.build(message, delivery)
        sent_data = False
        try:
            with self._connect() as connection:
                if self.username:
                    connection.login(self.username, self._password or "")
                sent_data = True
                refused = connection.send_message(email)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"email: login refused ({exc.smtp_code})", permanent=True) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = ", ".join(f"{code}" for code, _ in exc.recipients.values())
            raise DeliveryError(f"email: recipient refused ({codes})", permanent=True) from exc
        except smtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.smtp_code < 600
            raise DeliveryError(
                f"email: server answered {exc.smtp_code}", permanent=permanent
            ) from exc
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise DeliveryError(f"email: TLS failed: {exc}", permanent=True) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(f"email: {exc}", permanent=True) from exc
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"email: {type(exc).__name__}: {exc}", in_doubt=sent_data) from exc
        if refused:
            raise DeliveryError(
                f"email: recipient refused ({delivery.destination})", permanent=True
            )
        return Receipt({"message_id": email["Message-ID"], "to": delivery.destination})

    def find_sent(self, delivery: Delivery) -> Receipt | None:
        """SMTP cannot be asked: a message in doubt waits for a person to retry it."""
        raise DeliveryError(
            "email: delivery in doubt (interrupted while sending); "
            f"`rearguard notifications retry {delivery.outbox_id}` sends it again",
            permanent=True,
        )

    def close(self) -> None:
        """Nothing kept open between messages."""
