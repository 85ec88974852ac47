"""Who may do what: the three roles and the one check every handler calls.

Roles come from settings: ``Settings.coordinators`` (MELASMA_COORDINATORS) are coordinators,
``Settings.raters`` are raters, anyone else who reaches the app is a visitor. In the local mode
(no passwords, no Hugging Face sign-in) the one local user is the coordinator and may rate as any
configured rater. Handlers take the user from ``gr.Request.username`` (None when nobody signs in).
"""

from __future__ import annotations

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


def local_mode(settings: Settings) -> bool:
    """True when nobody signs in (no passwords, no Hugging Face sign-in): one local user."""
    return not settings.auth and not settings.oauth


def role_of(username: str | None, settings: Settings) -> Role:
    """The user's role: coordinator if named in coordinators, rater if named in raters, else visitor.

    In the local mode everyone is the coordinator (the one local user)."""
    if local_mode(settings):
        return Role.COORDINATOR
    if username is None:
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
    who = "you are not signed in" if username is None else f"{username!r} is a {role_of(username, settings)}"
    raise AccessDenied(f"only a {role_needed} may do this ({who})")


def train_role(settings: Settings) -> Role:
    """The role training needs: coordinator, or anyone when ``visitors_can_train`` is set."""
    return Role.VISITOR if settings.visitors_can_train else Role.COORDINATOR


def require_rater(username: str | None, rater: str | None, settings: Settings) -> str:
    """The rater name a user may rate as, or AccessDenied.

    Signed-in users rate only as themselves, and only if they are a configured rater; the local
    user may rate as any configured rater (the name chosen in the form)."""
    if local_mode(settings):
        name = rater
    else:
        if username is None:
            raise AccessDenied("sign in first: rating needs a signed-in rater")
        if rater and rater != username:
            raise AccessDenied(f"signed in as {username!r}; cannot rate as {rater!r}")
        name = username
    if not name:
        raise AccessDenied("choose your rater name first")
    if name not in settings.raters:
        raise AccessDenied(f"{name!r} is not one of the raters of this study")
    return name
