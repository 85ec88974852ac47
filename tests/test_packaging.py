"""The installable package: dependency ranges against the lock, every subpackage and the demo weights in
the wheel, one version; the slow test builds the wheel and runs `melasma` from a fresh venv."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

import melasma

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("melasma", "annotation")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _dependencies() -> list[Requirement]:
    """The runtime dependencies and those of every extra but `dev` (tools the lock does not pin),
    without an extra's reference to another extra of this package."""
    project = _pyproject()["project"]
    extras = [line for name, lines in project["optional-dependencies"].items() if name != "dev" for line in lines]
    requirements = [Requirement(line) for line in [*project["dependencies"], *extras]]
    return [req for req in requirements if req.name != project["name"]]


def _lock() -> dict[str, Version]:
    """name -> pinned version of every requirements.txt line that applies to this interpreter."""
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" not in line:
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate():
            pins[requirement.name.lower().replace("_", "-")] = Version(next(iter(requirement.specifier)).version)
    return pins


def _key(name: str) -> str:
    return name.lower().replace("_", "-")


def test_the_lock_pins_fall_within_the_declared_ranges() -> None:
    lock = _lock()
    outside = [f"{req.name}=={lock[_key(req.name)]} not in {req.specifier}" for req in _dependencies()
               if _key(req.name) in lock and not req.specifier.contains(lock[_key(req.name)], prereleases=True)]
    assert not outside
    assert {"torch", "timm", "gradio", "mediapipe", "spaces", "psycopg"} <= {_key(req.name) for req in _dependencies()}


def test_every_declared_dependency_is_installed_in_range() -> None:
    wrong = []
    for req in _dependencies():
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            wrong.append(f"{req.name} missing")
            continue
        if not req.specifier.contains(installed, prereleases=True):
            wrong.append(f"{req.name} {installed} not in {req.specifier}")
    assert not wrong


def test_the_version_lives_in_one_place() -> None:
    project = _pyproject()
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "melasma.__version__"}
    assert Version(melasma.__version__)


def test_every_folder_of_code_is_a_package_the_wheel_finds() -> None:
    """`packages.find` takes folders with an `__init__.py`: one without would be left out of the wheel."""
    folders = {path.parent for name in PACKAGES for path in (ROOT / name).rglob("*.py")
               if "__pycache__" not in path.parts}
    assert [str(f.relative_to(ROOT)) for f in sorted(folders) if not (f / "__init__.py").is_file()] == []
    assert _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"] == [
        "melasma", "melasma.*", "annotation", "annotation.*"]


def test_the_demo_weights_are_package_data() -> None:
    globs = _pyproject()["tool"]["setuptools"]["package-data"]["melasma"]
    weights = [p for p in (ROOT / "melasma" / "weights").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    uncovered = [str(p) for p in weights if not any(p.relative_to(ROOT / "melasma").match(g) for g in globs)]
    assert weights and not uncovered
    assert (ROOT / "melasma" / "weights" / "demo" / "model.safetensors").is_file()


def _run(command: list[str], cwd: Path) -> str:
    done = subprocess.run(command, check=False, cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


@pytest.mark.slow
def test_the_wheel_installs_and_predicts_outside_the_checkout(tmp_path: Path) -> None:
    """The CI step in small: build, install into a venv that reuses this interpreter's packages, run."""
    source = tmp_path / "source"  # what git tracks or sees, copied: the build writes no build/ into the checkout
    files = _run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], ROOT).split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *_no_isolation(),
          "-w", str(wheels), str(source)], tmp_path)
    wheel = next(wheels.glob("melasma_severity_studio-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    folders = {str(p.parent.relative_to(ROOT)) for name in PACKAGES for p in (ROOT / name).rglob("__init__.py")}
    assert folders <= {str(Path(n).parent) for n in names}
    assert "melasma/weights/demo/model.safetensors" in names and "melasma/weights/demo/model.json" in names

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], tmp_path)
    see_these_packages(venv)
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-index",
          str(wheel)], tmp_path)
    out = tmp_path / "outside"
    out.mkdir()
    usage = _run([str(venv / "bin" / "melasma"), "--help"], out)
    assert usage.startswith("usage: melasma ") and "predict" in usage
    _run([str(venv / "bin" / "melasma"), "synth", "--out", "demo", "-n", "3", "--size", "64"], out)
    line = _run([str(venv / "bin" / "melasma"), "predict", "demo/images/synth_0000.jpg"], out)
    assert '"severity"' in line
    where = _run([str(venv / "bin" / "python"), "-c",
                  "import melasma.inference as i; print(i.default_checkpoint())"], out)
    assert where.strip().startswith(str(venv))


def see_these_packages(venv: Path) -> None:
    """Let the nested venv see the packages of the interpreter running the tests. `--system-site-packages`
    alone shows the base interpreter's, which lacks them when the suite itself runs in a venv (as the
    README installs it): a .pth file in the nested venv names this interpreter's site-packages, after
    its own (the wheel installed there still comes first)."""
    paths = sysconfig.get_paths()
    nested = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 check=True, capture_output=True, text=True).stdout.strip())
    nested.mkdir(parents=True, exist_ok=True)
    (nested / "_outer_site_packages.pth").write_text("".join(f"{path}\n" for path in dict.fromkeys(
        (paths["purelib"], paths["platlib"]))))


def _no_isolation() -> list[str]:
    """Build with this interpreter's setuptools when it meets `[build-system] requires` (no download);
    else pip's isolated build fetches it."""
    requirement = Requirement(_pyproject()["build-system"]["requires"][0])
    try:
        installed = metadata.version(requirement.name)
    except metadata.PackageNotFoundError:
        return []
    return ["--no-build-isolation"] if requirement.specifier.contains(installed) else []
