"""Run-time settings of the app, from environment variables (flags in app.py override them)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from melasma.errors import UserError
from melasma.layout import DataLayout, absolute

DEFAULT_RATERS = ("rater1", "rater2", "rater3")
#: MELASMA_DATABASE_URL's accepted forms (annotation.db.engines reads them)
DATABASE_SCHEMES = ("postgresql://", "postgres://", "sqlite:///")
#: the bounds of one training request and of the queue (melasma.jobs.limits.TrainingLimits is built from
#: these fields of Settings): field name -> environment variable
TRAINING_LIMIT_ENV: dict[str, str] = {
    "max_image_size": "MELASMA_MAX_IMAGE_SIZE",
    "max_epochs": "MELASMA_MAX_EPOCHS",
    "max_batch_size": "MELASMA_MAX_BATCH_SIZE",
    "max_archs": "MELASMA_MAX_ARCHS",
    "max_jobs_per_user": "MELASMA_MAX_JOBS_PER_USER",
    "max_jobs": "MELASMA_MAX_JOBS",
}


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "melasma"


def _split_names(value: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in value.split(",") if name.strip())


def _flag(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _whole(env: dict[str, str], name: str, default: str) -> int:
    """The whole number in environment variable `name` (`default` when unset); UserError naming it."""
    text = env.get(name, default)
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{name} must be a whole number, got {text!r}") from None


def _real(env: dict[str, str], name: str, default: str) -> float:
    """The number in environment variable `name` (`default` when unset); UserError naming it."""
    text = env.get(name, default)
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{name} must be a number, got {text!r}") from None


def _parse_auth(value: str) -> tuple[tuple[str, str], ...]:
    """`user:password,user2:password2` -> ((user, password), ...)."""
    pairs = []
    for item in _split_names(value):
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            raise UserError(f"MELASMA_AUTH entries must look like user:password, got {item!r}")
        pairs.append((user, password))
    return tuple(pairs)


def _training_limits(env: dict[str, str]) -> dict[str, Any]:
    """The MELASMA_MAX_* variables that are set, as whole numbers (Settings checks them: >= 1)."""
    values: dict[str, Any] = {}
    for name, variable in TRAINING_LIMIT_ENV.items():
        text = env.get(variable, "").strip()
        if text:
            if not text.isdigit():
                raise UserError(f"{variable} must be a whole number >= 1, got {text!r}")
            values[name] = int(text)
    return values


@dataclass(frozen=True)
class Settings:
    """Where data lives and how rating works.

    Environment: MELASMA_DATA_DIR, MELASMA_RATERS (comma list), MELASMA_RATINGS_PER_IMAGE,
    MELASMA_SPREAD_THRESHOLD, MELASMA_AUTH (user:password,...), MELASMA_MAX_UPLOAD_MB,
    MELASMA_MAX_UPLOAD_MEGAPIXELS (pixels decoded per upload batch, from the headers),
    MELASMA_UPLOAD_BUDGET_MB_PER_USER / MELASMA_UPLOAD_BUDGET_MB (MB one client / everyone may upload
    per hour: melasma.ui.uploads),
    MELASMA_MAX_IMAGE_SIZE, MELASMA_MAX_EPOCHS, MELASMA_MAX_BATCH_SIZE, MELASMA_MAX_ARCHS,
    MELASMA_MAX_JOBS_PER_USER, MELASMA_MAX_JOBS (the training limits: `TRAINING_LIMIT_ENV`, checked by
    melasma.jobs.limits.TrainingLimits.from_settings),
    MELASMA_COORDINATORS (comma list), MELASMA_VISITORS_CAN_TRAIN (1/0), MELASMA_OAUTH (1/0:
    Hugging Face sign-in on a Space), MELASMA_DATABASE_URL (`postgresql://...` for a rater store
    shared by several app servers; unset: `annotations.sqlite` in the data folder),
    MELASMA_EXAMPLES_DIR (a folder of real photos the Predict tab offers first, with the credit file
    beside them: melasma.ui.examples), MELASMA_LOCAL_MODE (1: no sign-in and everyone who reaches the
    app is the coordinator, even on a Space or a non-loopback address; without it local mode needs a
    loopback bind). ``public_link`` is set by ``serve(share=True)``, not read from the environment. Roles: see
    melasma.access. Also read here, so that no other module reads the environment:
    MELASMA_CACHE_DIR (decoded-image cache of trainings outside the app, default ~/.cache/melasma),
    SPACE_ID (set by Hugging Face on a Space), GRADIO_SERVER_NAME, MELASMA_GPU_SECONDS (cap of a
    ZeroGPU call). SPACES_ZERO_GPU is the exception: app.py and melasma.jobs.runner must know it while
    modules are imported (ZeroGPU patches torch first), before this module can be. The data folder's
    layout: melasma.layout.
    """

    data_dir: Path = Path("data")
    raters: tuple[str, ...] = DEFAULT_RATERS
    ratings_per_image: int = 3
    spread_threshold: float = 8.0
    auth: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    max_upload_mb: int = 50
    max_upload_megapixels: int = 200
    upload_budget_mb_per_user: int = 1000
    upload_budget_mb: int = 4000
    coordinators: tuple[str, ...] = ()
    visitors_can_train: bool = False
    oauth: bool = False
    max_image_size: int = 384
    max_epochs: int = 100
    max_batch_size: int = 128
    max_archs: int = 6
    max_jobs_per_user: int = 2
    max_jobs: int = 10
    database_url: str = ""
    image_cache_dir: Path = field(default_factory=_default_cache_dir)
    space_id: str = ""
    server_name: str = ""
    gpu_seconds: int | None = None
    examples_dir: Path | None = None
    local_mode_opt_in: bool = False
    public_link: bool = False

    def __post_init__(self) -> None:
        # absolute once, here: every path built from it (demo set, exports, runs) is then absolute too
        object.__setattr__(self, "data_dir", absolute(self.data_dir))
        for name, variable in TRAINING_LIMIT_ENV.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"{variable} must be a whole number >= 1, got {value!r}")
        if self.ratings_per_image < 2:
            raise UserError(f"ratings per image must be at least 2, got {self.ratings_per_image}")
        if len(set(self.raters)) != len(self.raters):
            raise UserError("rater names must be unique")
        if self.examples_dir is not None and not Path(self.examples_dir).is_dir():
            raise UserError(f"MELASMA_EXAMPLES_DIR / --examples: {self.examples_dir} is not a folder")
        if self.auth and self.oauth:
            raise UserError("choose one sign-in: MELASMA_AUTH (passwords) or MELASMA_OAUTH (Hugging Face)")
        if min(self.upload_budget_mb_per_user, self.upload_budget_mb) < self.max_upload_mb:
            raise UserError("MELASMA_UPLOAD_BUDGET_MB_PER_USER and MELASMA_UPLOAD_BUDGET_MB must be at least "
                             f"MELASMA_MAX_UPLOAD_MB ({self.max_upload_mb})")
        if self.local_mode_opt_in and (self.auth or self.oauth):
            raise UserError("MELASMA_LOCAL_MODE=1 means nobody signs in: unset it, or MELASMA_AUTH / MELASMA_OAUTH")
        if self.database_url and not self.database_url.startswith(DATABASE_SCHEMES):
            scheme = self.database_url.partition(":")[0]
            raise UserError(f"MELASMA_DATABASE_URL must start with postgresql:// or sqlite:///, got {scheme}:")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read the settings from environment variables, falling back to the defaults."""
        env = dict(os.environ if env is None else env)
        auth = _parse_auth(env.get("MELASMA_AUTH", ""))
        coordinators = _split_names(env.get("MELASMA_COORDINATORS", ""))
        oauth = _flag(env.get("MELASMA_OAUTH", ""))
        # Default rater names only where nobody signs in: under Hugging Face sign-in an account named
        # rater1 would otherwise become a rater.
        raters = _split_names(env.get("MELASMA_RATERS", "")) or (
            tuple(user for user, _ in auth if user not in coordinators) if auth else () if oauth else DEFAULT_RATERS
        )
        return cls(
            data_dir=Path(env.get("MELASMA_DATA_DIR", "data")),
            raters=raters,
            ratings_per_image=_whole(env, "MELASMA_RATINGS_PER_IMAGE", "3"),
            spread_threshold=_real(env, "MELASMA_SPREAD_THRESHOLD", "8.0"),
            auth=auth,
            max_upload_mb=_whole(env, "MELASMA_MAX_UPLOAD_MB", "50"),
            max_upload_megapixels=_whole(env, "MELASMA_MAX_UPLOAD_MEGAPIXELS", "200"),
            upload_budget_mb_per_user=_whole(env, "MELASMA_UPLOAD_BUDGET_MB_PER_USER", "1000"),
            upload_budget_mb=_whole(env, "MELASMA_UPLOAD_BUDGET_MB", "4000"),
            coordinators=coordinators,
            visitors_can_train=_flag(env.get("MELASMA_VISITORS_CAN_TRAIN", "")),
            oauth=oauth,
            **_training_limits(env),
            database_url=env.get("MELASMA_DATABASE_URL", "").strip(),
            image_cache_dir=Path(env["MELASMA_CACHE_DIR"]) if env.get("MELASMA_CACHE_DIR") else _default_cache_dir(),
            space_id=env.get("SPACE_ID", ""),
            server_name=env.get("GRADIO_SERVER_NAME", ""),
            gpu_seconds=_whole(env, "MELASMA_GPU_SECONDS", "") if env.get("MELASMA_GPU_SECONDS") else None,
            examples_dir=Path(env["MELASMA_EXAMPLES_DIR"]) if env.get("MELASMA_EXAMPLES_DIR") else None,
            local_mode_opt_in=_flag(env.get("MELASMA_LOCAL_MODE", "")),
        )

    @property
    def layout(self) -> DataLayout:
        """The data folder's databases and sub-folders."""
        return DataLayout(self.data_dir)

    @property
    def ratings_db(self) -> Path:
        return self.layout.ratings_db

    @property
    def jobs_db(self) -> Path:
        return self.layout.jobs_db

    @property
    def runs_dir(self) -> Path:
        return self.layout.runs_dir

    @property
    def demo_dir(self) -> Path:
        return self.layout.demo_dir

    @property
    def photos_dir(self) -> Path:
        return self.layout.photos_dir

    @property
    def exports_dir(self) -> Path:
        return self.layout.exports_dir

    @property
    def cache_dir(self) -> Path:
        return self.layout.cache_dir
