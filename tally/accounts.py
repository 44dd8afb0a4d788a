"""Accounts: sign-up, email verification, sign-in, sessions, password change and reset.

Shared by the website (`tally.site`), the CLI (`tally user ...`) and the tests; it never
sees an HTTP request. Session ids and single-use link tokens are random, given to the
browser or mailed once, and stored only as their SHA-256 hash.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from tally import workspaces
from tally.errors import BadRequest, Conflict, Forbidden, RateLimited, Unauthorized
from tally.links import new_secret, secret_hash
from tally.mail import Mail, Mailer
from tally.models import Account, Session
from tally.passwords import (
    check_new_password,
    dummy_hash,
    hash_password,
    needs_rehash,
    verify_password,
)
from tally.storage.base import Store
from tally.throttle import FailureWindow, LoginThrottle, Window

SESSION_TTL = 14 * 86400.0
VERIFY_TTL = 3 * 86400.0
RESET_TTL = 3600.0
MAILS_PER_HOUR = 5  # verification and reset emails per account (no mail bombing)
MAIL_WINDOW = 3600.0
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
        throttle: LoginThrottle | None = None,
        mails: Window | None = None,
    ) -> None:
        self.store = store
        self.mailer = mailer
        self.signup = signup
        self.throttle = throttle or LoginThrottle.local()
        self.mails = mails or FailureWindow(MAILS_PER_HOUR, MAIL_WINDOW)
        # for the metrics: sign-ins by result, emails the mail window refused
        self.signins = dict.fromkeys(SIGNIN_RESULTS, 0)
        self.mails_throttled = 0

    # sign-up and verification ------------------------------------------------

    async def sign_up(
        self, email: str, password: str, base_url: str, invite: str | None = None
    ) -> SignUp:
        """Create an account with a personal workspace (or join the invitation's); the
        first account also owns `default`. Mails the verification link unless an
        invitation to this address already proved it."""
        email = check_email(email)
        check_new_password(password, email)
        now = time.time()
        invitation = None
        if invite:
            invitation = await self.store.peek_one_time("invite", secret_hash(invite), now)
            if invitation is None:
                raise BadRequest("This invitation link is invalid, used or expired.")
            if invitation.email.lower() != email.lower():
                raise BadRequest(f"This invitation is for {invitation.email}.")
        elif self.signup != "open":
            raise Forbidden(
                "Sign-up on this server is by invitation only."
                if self.signup == "invite"
                else "Sign-up is closed on this server."
            )
        if await self.store.find_account(email) is not None:
            raise Conflict("An account with this email exists. Sign in, or reset its password.")
        first = await self.store.count_accounts() == 0
        try:
            account = await self.store.create_account(email, await hash_password(password), now)
        except Conflict:
            raise Conflict("An account with this email exists. Sign in instead.") from None
        if first:
            await workspaces.adopt_bootstrap(self.store, account)
        if invitation is not None:
            ws = await workspaces.accept_invite(self.store, account, invite or "")
            await self.store.mark_verified(account.id, now)
            account = await self._reload(account.id)
            return SignUp(account, ws.slug)
        personal = await workspaces.create_personal(self.store, account)
        await self.send_verification(account, base_url)
        return SignUp(account, personal.slug)

    async def _may_mail(self, account: Account) -> bool:
        """Count one more email to the account; False once it had MAILS_PER_HOUR."""
        key, now = account.email.lower(), time.time()
        if await self.mails.retry_after(key, now) > 0:
            self.mails_throttled += 1
            return False
        await self.mails.record(key, now)
        return True

    async def send_verification(self, account: Account, base_url: str) -> bool:
        """Mail a confirmation link; False if the account had too many emails lately."""
        if not await self._may_mail(account):
            return False
        secret = new_secret()
        now = time.time()
        await self.store.create_one_time(
            "verify", secret_hash(secret), now, now + VERIFY_TTL, account_id=account.id
        )
        link = f"{base_url}/verify/{secret}"
        await self.mailer.send(
            Mail(
                account.email,
                "Confirm your email for Tally",
                f"Confirm your email address to create API tokens:\n\n{link}\n\n"
                "The link works once, for 3 days. If you did not sign up, ignore this email.",
            )
        )
        return True

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
        both) or RateLimited (too many failures for the account or the IP)."""
        now = time.time()
        try:
            await self.throttle.check(email.strip(), ip, now)
        except RateLimited:
            self.signins["throttled"] += 1
            raise
        account = await self.store.find_account(email.strip())
        stored = account.password_hash if account else await dummy_hash()
        ok = await verify_password(stored, password)
        if account is None or not ok:
            await self.throttle.failed(email.strip(), ip, now)
            self.signins["wrong"] += 1
            raise Unauthorized("Wrong email or password.")
        await self.throttle.succeeded(email.strip())
        self.signins["ok"] += 1
        if needs_rehash(account.password_hash):
            # the parameters changed since it was hashed: store today's (sessions stay)
            await self.store.set_password(account.id, await hash_password(password))
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
        check_new_password(new, account.email)
        await self.store.set_password(account.id, await hash_password(new))
        await self.store.delete_sessions(account.id)

    async def request_reset(self, email: str, base_url: str) -> None:
        """Mail a reset link if the account exists (the caller says the same either way)."""
        account = await self.store.find_account(email.strip())
        if account is None or not await self._may_mail(account):
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
        first = await self.store.count_accounts() == 0
        account = await self.store.create_account(email, await hash_password(password), now)
        if first:
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
