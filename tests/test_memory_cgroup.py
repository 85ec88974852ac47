"""Issue 30 item 8: the job memory check reads this process's own cgroup (v1 and v2) and every
ancestor's limit, from real files in a fake cgroup tree (`cgroup_free(root, self_cgroup)`)."""

from __future__ import annotations

from pathlib import Path

from melasma.jobs.memory import cgroup_free

GB = 10**9


def _write(folder: Path, **files: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("_", ".", 1) if name.startswith("memory_") else folder / name).write_text(text + "\n")


def _self(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "self_cgroup"
    path.write_text(text)
    return path


def test_v2_reads_the_own_cgroup_not_the_root(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    root.mkdir()  # the root cgroup has no memory.max (as on a host)
    _write(root / "system.slice" / "app.service", memory_max=str(int(3.4 * GB)), memory_current=str(1 * GB))
    own = _self(tmp_path, "0::/system.slice/app.service\n")
    assert cgroup_free(root, own) == int(2.4 * GB)


def test_v2_a_tighter_parent_limit_binds(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(root / "kubepods", memory_max=str(2 * GB), memory_current=str(int(1.5 * GB)))
    _write(root / "kubepods" / "pod1", memory_max="max", memory_current=str(1 * GB))
    assert cgroup_free(root, _self(tmp_path, "0::/kubepods/pod1\n")) == int(0.5 * GB)


def test_v2_inside_a_cgroup_namespace_reads_the_mount_root(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(root, memory_max=str(4 * GB), memory_current=str(3 * GB))
    assert cgroup_free(root, _self(tmp_path, "0::/\n")) == 1 * GB


def test_v2_without_any_limit_is_none(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(root / "user.slice", memory_max="max", memory_current=str(GB))
    assert cgroup_free(root, _self(tmp_path, "0::/user.slice\n")) is None
    assert cgroup_free(root, tmp_path / "missing") is None


def test_v1_reads_the_memory_controllers_cgroup(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(root / "memory", memory_limit_in_bytes=str(2**63 - 4096), memory_usage_in_bytes=str(5 * GB))
    _write(root / "memory" / "docker" / "abc", memory_limit_in_bytes=str(3 * GB),
           memory_usage_in_bytes=str(2 * GB))
    own = _self(tmp_path, "12:cpu,cpuacct:/docker/abc\n7:memory:/docker/abc\n0::/docker/abc\n")
    assert cgroup_free(root, own) == 1 * GB


def test_v1_container_whose_own_path_is_the_mount_root(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _write(root / "memory", memory_limit_in_bytes=str(3 * GB), memory_usage_in_bytes=str(int(2.5 * GB)))
    own = _self(tmp_path, "7:memory:/docker/0123abcd\n")  # not under this mount: the mount is the container's
    assert cgroup_free(root, own) == int(0.5 * GB)


def test_this_machine_answers_without_error() -> None:
    free = cgroup_free()
    assert free is None or free >= 0
