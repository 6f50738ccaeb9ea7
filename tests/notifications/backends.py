"""Email backends that fail the way SMTP servers do, for the services' tests."""

import smtplib
from collections.abc import Sequence
from typing import Any

from django.core.mail.backends.base import BaseEmailBackend


class DisconnectingBackend(BaseEmailBackend):
    """The server drops the connection: a transient failure."""

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")


class RefusingBackend(BaseEmailBackend):
    """The server refuses every recipient with 550: a permanent failure."""

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        recipients = {r: (550, b"5.1.1 No such user") for m in email_messages for r in m.to}
        raise smtplib.SMTPRecipientsRefused(recipients)


class FlakyBackend(BaseEmailBackend):
    """Drops the connection on the first send of the process, then delivers to ``outbox``."""

    failures = 1
    outbox: list[Any] = []

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        if FlakyBackend.failures > 0:
            FlakyBackend.failures -= 1
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        FlakyBackend.outbox.extend(email_messages)
        return len(email_messages)


class TooLargeBackend(BaseEmailBackend):
    """The server refuses the email itself with ``code`` (552: too large, for good;
    452: out of storage, for now)."""

    code = 552

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        raise smtplib.SMTPDataError(self.code, b"5.3.4 Message size exceeds fixed limit")


class FullMailboxBackend(TooLargeBackend):
    code = 452
