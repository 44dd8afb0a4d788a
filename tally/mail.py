"""Outgoing email (verification, password reset, invitations) over SMTP.

Without TALLY_SMTP_HOST, messages go to the server log instead (INFO, logger
`tally.mail`), so a local install works without a mail server.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage

from tally.config import Settings

log = logging.getLogger("tally.mail")
SMTP_TIMEOUT = 20.0


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    subject: str
    body: str


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.user = settings.smtp_user
        self.password = settings.smtp_password
        self.security = settings.smtp_security
        self.sender = settings.mail_from
        # for the metrics (tally_mails_total): handed to SMTP (or the log), and refused
        self.sent = 0
        self.failed = 0

    @property
    def configured(self) -> bool:
        return bool(self.host)

    async def send(self, mail: Mail) -> bool:
        """Send `mail`; False if the SMTP server could not take it (logged). A failed email
        never fails the action that sent it: the user can ask for it again."""
        if not self.host:
            log.info("email to %s (no SMTP configured): %s\n%s", mail.to, mail.subject, mail.body)
            self.sent += 1
            return True
        try:
            await asyncio.to_thread(self._send, mail)
        except (OSError, smtplib.SMTPException) as exc:
            log.error("could not send the email %r to %s: %s", mail.subject, mail.to, exc)
            self.failed += 1
            return False
        self.sent += 1
        return True

    def _send(self, mail: Mail) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message.set_content(mail.body)
        host, port = self.host or "", self.port
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.security == "tls":
            smtp = smtplib.SMTP_SSL(host, port or 465, timeout=SMTP_TIMEOUT, context=context)
        else:
            smtp = smtplib.SMTP(host, port or 587, timeout=SMTP_TIMEOUT)
        with smtp:
            if self.security == "starttls":
                smtp.starttls(context=context)
            if self.user:
                smtp.login(self.user, self.password or "")
            smtp.send_message(message)
        log.info("email sent to %s: %s", mail.to, mail.subject)
