"""Who may do what: the three roles and the one check every handler calls.

Roles come from settings: ``Settings.coordinators`` (MELASMA_COORDINATORS) are coordinators,
``Settings.raters`` are raters, anyone else who reaches the app is a visitor. The modes
(``sign_in_mode``): with passwords or Hugging Face sign-in the signed-in name decides; without
sign-in the app is in the local mode (one local user, the coordinator, who may rate as any
configured rater) only when it listens on a loopback address and not on a Space (or with the
explicit opt-in MELASMA_LOCAL_MODE=1); otherwise it is visitor-only: everyone is a visitor.
Handlers take the user from ``gr.Request.username`` (None when nobody signs in; GUEST for a visitor
who has not signed in with Hugging Face).
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum

from melasma.settings import Settings


class Role(StrEnum):
    """What a user may do; each role may do everything the roles below it may."""

    COORDINATOR = "coordinator"
    RATER = "rater"
    VISITOR = "visitor"


#: Higher rank may do everything a lower rank may.
_RANK = {Role.VISITOR: 0, Role.RATER: 1, Role.COORDINATOR: 2}

ROLE_DUTIES: dict[Role, str] = {
    Role.COORDINATOR: "add photos, export, adjudicate, read agreement, train",
    Role.RATER: "rate the photos in their own queue",
    Role.VISITOR: "predict (and train where the settings allow it)",
}


class AccessDenied(PermissionError):
    """The user's role does not allow the action; the message says which role it needs."""


#: The user name of a visitor who has not signed in with Hugging Face (see ui.app.hf_username).
GUEST = "guest"


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable only from this machine ("" is Gradio's default, 127.0.0.1)."""
    name = host.strip().strip("[]").lower()
    if name in ("", "localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def sign_in_mode(settings: Settings) -> str:
    """How users are known: "passwords", "oauth", "local" (one local user) or "visitor-only"."""
    if settings.auth:
        return "passwords"
    if settings.oauth:
        return "oauth"
    if settings.local_mode_opt_in:
        return "local"
    reachable = bool(settings.space_id) or settings.public_link or not is_loopback(settings.server_name)
    return "visitor-only" if reachable else "local"


def local_mode(settings: Settings) -> bool:
    """True when nobody signs in and the app is reachable only from this machine (or
    MELASMA_LOCAL_MODE=1 says so): one local user, the coordinator."""
    return sign_in_mode(settings) == "local"


def visitor_only(settings: Settings) -> bool:
    """True when nobody signs in but others can reach the app (a Space, a non-loopback address,
    a share link): everyone is a visitor, Predict only."""
    return sign_in_mode(settings) == "visitor-only"


def anonymous(username: str | None) -> bool:
    """Whether the user has no name of their own (not signed in, or an anonymous OAuth visitor)."""
    return username is None or username == GUEST


def role_of(username: str | None, settings: Settings) -> Role:
    """The user's role: coordinator if named in coordinators, rater if named in raters, else visitor.

    In the local mode everyone is the coordinator (the one local user)."""
    if local_mode(settings):
        return Role.COORDINATOR
    if anonymous(username):
        return Role.VISITOR
    if username in settings.coordinators:
        return Role.COORDINATOR
    if username in settings.raters:
        return Role.RATER
    return Role.VISITOR


def allows(role_needed: Role, username: str | None, settings: Settings) -> bool:
    """Whether the user's role is at least ``role_needed``."""
    return _RANK[role_of(username, settings)] >= _RANK[role_needed]


def require(role_needed: Role, username: str | None, settings: Settings) -> None:
    """Raise AccessDenied unless the user's role is at least ``role_needed``."""
    if allows(role_needed, username, settings):
        return
    if visitor_only(settings):
        raise AccessDenied(f"only a {role_needed} may do this, and nobody can sign in on this server: "
                           "its operator must set MELASMA_AUTH or MELASMA_OAUTH (see docs/roles-and-privacy.md)")
    who = "you are not signed in" if anonymous(username) else f"{username!r} is a {role_of(username, settings)}"
    raise AccessDenied(f"only a {role_needed} may do this ({who})")


def train_role(settings: Settings) -> Role:
    """The role training needs: coordinator, or anyone when ``visitors_can_train`` is set."""
    return Role.VISITOR if settings.visitors_can_train else Role.COORDINATOR


def require_job_owner(username: str | None, settings: Settings) -> str | None:
    """The name a training job is filed under (None: the local user), or AccessDenied for an
    anonymous visitor: jobs, their quota and who may cancel them need a name of one's own."""
    if local_mode(settings):
        return username
    if anonymous(username):
        raise AccessDenied("sign in to start or cancel a training job: anonymous visitors cannot own one")
    return username


def require_rater(username: str | None, rater: str | None, settings: Settings) -> str:
    """The rater name a user may rate as, or AccessDenied.

    Signed-in users rate only as themselves, and only if they are a configured rater; the local
    user may rate as any configured rater (the name chosen in the form)."""
    if local_mode(settings):
        name = rater
    else:
        if anonymous(username):
            raise AccessDenied("sign in first: rating needs a signed-in rater")
        if rater and rater != username:
            raise AccessDenied(f"signed in as {username!r}; cannot rate as {rater!r}")
        name = username
    if not name:
        raise AccessDenied("choose your rater name first")
    if name not in settings.raters:
        raise AccessDenied(f"{name!r} is not one of the raters of this study")
    return name
