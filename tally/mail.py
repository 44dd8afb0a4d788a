"""Outgoing email (verification, password reset, invitations) over SMTP, sent off the
request by an `Outbox`.

Without TALLY_SMTP_HOST, messages go to the server log instead (INFO, logger
`tally.mail`), so a local install works without a mail server; reset links never do
(tally.accounts.Accounts.request_reset).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import smtplib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage

from tally.config import Settings

log = logging.getLogger("tally.mail")
SMTP_TIMEOUT = 20.0
OUTBOX_SIZE = 1000  # jobs waiting at most; one more is refused, and logged
OUTBOX_DRAIN = 5.0  # seconds a stopping server waits for the jobs still queued


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


Job = Callable[[], Awaitable[object]]


class Outbox:
    """Email work done off the request: a bounded queue of jobs (send a mail, or look an
    account up and mail it) and one task that runs them in order.

    A page that may or may not send an email (a reset for an unknown address, a sign-up
    for a taken one) answers in the same time either way: the lookup, the link and the
    SMTP conversation happen here, after the answer. Nothing is lost silently: a job
    that fails, a full queue, and jobs still queued at shutdown are logged (ERROR)."""

    def __init__(self, mailer: Mailer, size: int = OUTBOX_SIZE) -> None:
        self.mailer = mailer
        self._queue: asyncio.Queue[tuple[Job, str]] = asyncio.Queue(size)
        self._task: asyncio.Task[None] | None = None

    def post(self, job: Job, what: str) -> bool:
        """Queue `job` (`what` names it in the log); False if the queue is full."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="tally-mail")
        try:
            self._queue.put_nowait((job, what))
        except asyncio.QueueFull:
            log.error("the mail queue is full (%d waiting): dropped %s", self._queue.qsize(), what)
            return False
        return True

    def send(self, mail: Mail) -> bool:
        """Queue `mail`; False if the queue is full (logged)."""
        return self.post(lambda: self.mailer.send(mail), f"the email {mail.subject!r} to {mail.to}")

    async def _run(self) -> None:
        while True:
            job, what = await self._queue.get()
            try:
                await job()
            except Exception:
                log.exception("could not do %s", what)
            finally:
                self._queue.task_done()

    async def idle(self) -> None:
        """Wait until every queued job is done."""
        await self._queue.join()

    async def close(self, drain: float = OUTBOX_DRAIN) -> None:
        """Run the queued jobs for up to `drain` seconds, then stop (the rest logged)."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), drain)
        left = self._queue.qsize()
        if left:
            log.error("stopping with %d email jobs not done: they are lost", left)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
