"""Accounts: sign-up, email verification, sign-in, sessions, password change and reset.

Shared by the website (`tally.site`), the CLI (`tally user ...`) and the tests; it never
sees an HTTP request. Session ids and single-use link tokens are random, given to the
browser or mailed once, and stored only as their SHA-256 hash.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from tally import workspaces
from tally.errors import BadRequest, Conflict, Forbidden, RateLimited, StorageError, Unauthorized
from tally.links import new_secret, secret_hash
from tally.mail import Mail, Mailer, Outbox
from tally.models import Account, Session
from tally.passwords import (
    PasswordsBusy,
    check_new_password,
    dummy_hash,
    hash_password,
    needs_rehash,
    verify_password,
)
from tally.storage.base import Store
from tally.throttle import (
    MAIL_FROM,
    MAIL_TO,
    SIGNUPS_FROM,
    LocalWindows,
    LoginThrottle,
    Windows,
    refusal,
)

log = logging.getLogger("tally.mail")
SESSION_TTL = 14 * 86400.0
VERIFY_TTL = 3 * 86400.0
RESET_TTL = 3600.0
# what a sign-in came to, for the metrics (tally_signins_total{result})
SIGNIN_RESULTS = ("ok", "wrong", "throttled")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")


def check_email(text: str) -> str:
    email = text.strip()
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        raise BadRequest("Enter a valid email address, like name@example.com.")
    return email


@dataclass(frozen=True, slots=True)
class SignUp:
    account: Account
    workspace_slug: str  # where the new account lands


class Accounts:
    def __init__(
        self,
        store: Store,
        mailer: Mailer,
        signup: str = "open",
        windows: Windows | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self.store = store
        self.mailer = mailer
        self.signup = signup
        self.windows: Windows = windows or LocalWindows()  # tally.throttle's limits
        self.throttle = LoginThrottle(self.windows)
        self.outbox = outbox or Outbox(mailer)
        # for the metrics: sign-ins by result, emails the mail limit refused
        self.signins = dict.fromkeys(SIGNIN_RESULTS, 0)
        self.mails_throttled = 0

    # sign-up and verification ------------------------------------------------

    async def sign_up(
        self,
        email: str,
        password: str,
        base_url: str,
        invite: str | None = None,
        client: str = "",
    ) -> Account | None:
        """Create an account, unconfirmed, with a personal workspace (or the invitation's
        membership instead); the first account also owns `default`. The confirmation link
        is mailed off the request. For an address that has an account, None, and that
        account is mailed a note instead: the caller answers the same either way (and
        the password is hashed either way, so it takes as long).

        TALLY_SIGNUP: `open` lets anyone sign up, `invite` only with an invitation to
        the address, `closed` nobody (the operator's `tally user create`). RateLimited
        when the `client` address made too many sign-ups (SIGNUPS_FROM) or emailing
        requests (MAIL_FROM) lately (an invited sign-up is not counted)."""
        email = check_email(email)
        check_new_password(password, email)
        now = time.time()
        if self.signup == "closed":
            raise Forbidden("Sign-up is closed on this server.")
        if invite:
            invitation = await self.store.peek_one_time("invite", secret_hash(invite), now)
            if invitation is None:
                raise BadRequest("This invitation link is invalid, used or expired.")
            if invitation.email.lower() != email.lower():
                raise BadRequest(f"This invitation is for {invitation.email}.")
        elif self.signup != "open":
            raise Forbidden("Sign-up on this server is by invitation only.")
        ticket = None
        if not invite:  # counted before the hash; given back if no account was made
            ticket = await self.windows.take([(SIGNUPS_FROM, client), (MAIL_FROM, client)], now)
            if not ticket.taken:
                raise refusal(ticket, "Too many sign-ups from your network.")
        try:
            password_hash = await hash_password(password)
        except PasswordsBusy:
            if ticket is not None:
                await self.windows.give_back(ticket)
            raise
        taken = await self.store.find_account(email)
        if taken is None:
            try:
                account = await self.store.create_account(email, password_hash, now)
            except Conflict:  # a sign-up with the same address got there first
                taken = await self.store.find_account(email)
        if taken is not None:
            note = taken
            self.outbox.post(lambda: self._mail_taken(note, base_url), f"the note to {email}")
            return None
        await workspaces.adopt_bootstrap(self.store, account)  # if it is the first one
        if invite:
            # the invitation proves nothing about the address: its inviter could read
            # the link on the members page, so the account confirms it like any other
            await workspaces.accept_invite(self.store, account, invite)
        else:
            await workspaces.create_personal(self.store, account)
        self.outbox.post(
            lambda: self.send_verification(account, base_url), f"the confirmation of {email}"
        )
        return account

    async def _mail_taken(self, account: Account, base_url: str) -> None:
        """Tell an account that someone signed up with its address."""
        if not await self._may_mail(account):
            return
        await self.mailer.send(
            Mail(
                account.email,
                "Your Tally account",
                "Someone, maybe you, tried to sign up for Tally with this email address, "
                "which has an account already. To use it, sign in:\n\n"
                f"{base_url}/login\n\nForgot the password? Choose a new one here:\n\n"
                f"{base_url}/forgot\n\nTo accept an invitation, sign in, then open its link "
                "again. If it was not you, ignore this email: nothing changed.",
            )
        )

    async def _may_mail(self, account: Account) -> bool:
        """Count one more email to the account; False once it had MAIL_TO's."""
        ticket = await self.windows.take([(MAIL_TO, account.email.lower())], time.time())
        if not ticket.taken:
            self.mails_throttled += 1
        return ticket.taken

    async def send_verification(self, account: Account, base_url: str) -> bool:
        """Queue a confirmation link; False if the account had too many emails lately."""
        if not await self._may_mail(account):
            return False
        secret = new_secret()
        now = time.time()
        await self.store.create_one_time(
            "verify", secret_hash(secret), now, now + VERIFY_TTL, account_id=account.id
        )
        link = f"{base_url}/verify/{secret}"
        self.outbox.send(
            Mail(
                account.email,
                "Confirm your email for Tally",
                f"Confirm your email address to create API tokens:\n\n{link}\n\n"
                "The link works once, for 3 days. If you did not sign up, ignore this email.",
            )
        )
        return True

    async def account_of_link(self, secret: str) -> tuple[Account, bool] | None:
        """The account a confirmation link was made for, whatever the link's state, and
        whether the link has expired (to say "already confirmed", or to offer a new
        link); None for a link that names no account."""
        link = await self.store.find_one_time("verify", secret_hash(secret))
        if link is None or link.account_id is None:
            return None
        account = await self.store.get_account(link.account_id)
        if account is None:
            return None
        return account, link.used_at is None and link.expires_at <= time.time()

    async def resend_verification(self, secret: str, base_url: str, client: str = "") -> Account:
        """A new confirmation link for the unconfirmed account of a used or expired one
        (whoever holds the old link got it by email). BadRequest if the link names no
        unconfirmed account; RateLimited past the client's emailing requests (MAIL_FROM)
        or the address's emails (MAIL_TO), with nothing sent."""
        found = await self.account_of_link(secret)
        if found is None or found[0].verified:
            raise BadRequest("This confirmation link names no account waiting to be confirmed.")
        account = found[0]
        ticket = await self.windows.take([(MAIL_FROM, client)], time.time())
        if not ticket.taken:
            raise refusal(ticket, "Too many email requests from your network.")
        if not await self.send_verification(account, base_url):
            raise RateLimited(
                "We sent several links to this address in the last hour: check its inbox."
            )
        return account

    async def verify_email(self, secret: str) -> Account | None:
        """Use a verification link; the account, or None if the link is bad or spent."""
        now = time.time()
        link = await self.store.use_one_time("verify", secret_hash(secret), now)
        if link is None or link.account_id is None:
            return None
        await self.store.mark_verified(link.account_id, now)
        return await self.store.get_account(link.account_id)

    async def mark_verified(self, email: str) -> Account:
        """The operator's `tally user verify`."""
        account = await self._by_email(email)
        await self.store.mark_verified(account.id, time.time())
        return await self._reload(account.id)

    # sign-in and sessions ----------------------------------------------------

    async def log_in(self, email: str, password: str, ip: str) -> Account:
        """The account, or Unauthorized (wrong email or password, the same message for
        both), RateLimited (too many failures for the account or the IP) or
        PasswordsBusy (503: the node is checking as many passwords as it may). `ip`: the
        client's key (its IP, an IPv6 client's network: tally.web.http.client_key).

        The attempt is counted before the password is checked, so attempts made at
        once cannot all be checked; a correct one takes its count back and clears the
        account's failures."""
        email = email.strip()
        try:
            ticket = await self.throttle.attempt(email, ip, time.time())
        except RateLimited:
            self.signins["throttled"] += 1
            raise
        try:
            account = await self.store.find_account(email)
            stored = account.password_hash if account else await dummy_hash()
            ok = await verify_password(stored, password)
        except (PasswordsBusy, StorageError):  # no password was checked
            await self.throttle.not_made(ticket)
            raise
        if account is None or not ok:
            self.signins["wrong"] += 1
            raise Unauthorized("Wrong email or password.")
        await self.throttle.succeeded(ticket)
        self.signins["ok"] += 1
        if needs_rehash(account.password_hash):
            # the parameters changed since it was hashed: store today's (sessions stay)
            new_hash = await hash_password(password)
            await self.store.set_password(account.id, new_hash, time.time(), rehash=True)
            account = await self._reload(account.id)
        return account

    async def start_session(self, account: Account) -> str:
        """A new session; its id, for the browser's cookie."""
        secret = new_secret()
        now = time.time()
        await self.store.create_session(secret_hash(secret), account.id, now, now + SESSION_TTL)
        return secret

    async def session(self, secret: str | None) -> Session | None:
        if not secret:
            return None
        return await self.store.find_session(secret_hash(secret), time.time())

    async def log_out(self, secret: str) -> None:
        await self.store.delete_session(secret_hash(secret))

    async def log_out_everywhere(self, account_id: int) -> int:
        return await self.store.delete_sessions(account_id)

    # passwords ---------------------------------------------------------------

    async def change_password(self, account: Account, current: str, new: str) -> None:
        """Change it and end every session (the caller starts a new one)."""
        if not await verify_password(account.password_hash, current):
            raise BadRequest("The current password is wrong.")
        await self.set_password(account, new)

    async def set_password(self, account: Account, new: str) -> None:
        """Set it, spend every outstanding reset link, end every session."""
        check_new_password(new, account.email)
        await self.store.set_password(account.id, await hash_password(new), time.time())
        await self.store.delete_sessions(account.id)

    async def request_reset(self, email: str, base_url: str, client: str = "") -> None:
        """Mail a reset link if the account exists, off the request: the caller answers
        the same, in the same time, either way. Without SMTP no link is made (one in the
        log would let whoever reads the log, wherever it is shipped, take the account
        over): the log tells the operator to run `tally user reset-password`. BadRequest
        for what is no email address (it says nothing of any account); RateLimited,
        whether the account exists or not, when the `client` address made too many
        emailing requests lately (MAIL_FROM)."""
        address = check_email(email)
        ticket = await self.windows.take([(MAIL_FROM, client)], time.time())
        if not ticket.taken:
            raise refusal(ticket, "Too many email requests from your network.")
        self.outbox.post(lambda: self._mail_reset(address, base_url), f"the reset for {address}")

    async def _mail_reset(self, email: str, base_url: str) -> None:
        account = await self.store.find_account(email)
        if account is None:
            log.info("a password reset was asked for %s, which has no account", email)
            return
        if not self.mailer.configured:
            log.warning(
                "a password reset was asked for %s, but this server sends no email "
                "(TALLY_SMTP_HOST is unset): to set a new password, run "
                "`tally user reset-password %s`",
                account.email,
                account.email,
            )
            return
        if not await self._may_mail(account):
            return
        secret = new_secret()
        now = time.time()
        await self.store.create_one_time(
            "reset", secret_hash(secret), now, now + RESET_TTL, account_id=account.id
        )
        await self.mailer.send(
            Mail(
                account.email,
                "Reset your Tally password",
                f"Choose a new password here:\n\n{base_url}/reset/{secret}\n\n"
                "The link works once, for 1 hour. If you did not ask for it, ignore this email.",
            )
        )

    async def reset_link_valid(self, secret: str) -> bool:
        return await self.store.peek_one_time("reset", secret_hash(secret), time.time()) is not None

    async def reset_password(self, secret: str, new: str) -> Account:
        """Set a new password through a reset link (which also proves the email)."""
        now = time.time()
        link = await self.store.peek_one_time("reset", secret_hash(secret), now)
        if link is None or link.account_id is None:
            raise BadRequest("This reset link is invalid, used or expired. Ask for a new one.")
        account = await self._reload(link.account_id)
        check_new_password(new, account.email)
        if await self.store.use_one_time("reset", secret_hash(secret), now) is None:
            raise BadRequest("This reset link is invalid, used or expired. Ask for a new one.")
        await self.set_password(account, new)
        await self.store.mark_verified(account.id, now)
        return await self._reload(account.id)

    # the operator's commands -------------------------------------------------

    async def create_by_operator(self, email: str, password: str, verified: bool) -> SignUp:
        """`tally user create`: whatever the sign-up mode, no email sent."""
        email = check_email(email)
        check_new_password(password, email)
        now = time.time()
        account = await self.store.create_account(email, await hash_password(password), now)
        await workspaces.adopt_bootstrap(self.store, account)
        personal = await workspaces.create_personal(self.store, account)
        if verified:
            await self.store.mark_verified(account.id, now)
        return SignUp(await self._reload(account.id), personal.slug)

    async def _by_email(self, email: str) -> Account:
        account = await self.store.find_account(email.strip())
        if account is None:
            raise BadRequest(f"no account with the email {email.strip()!r}")
        return account

    async def by_email(self, email: str) -> Account:
        return await self._by_email(email)

    async def _reload(self, account_id: int) -> Account:
        account = await self.store.get_account(account_id)
        if account is None:
            raise BadRequest("the account no longer exists")
        return account
