"""scratchgd._files: only regular files are opened; the memory limit is the process's own."""

import os
import socket
import subprocess
import sys
import textwrap

import pytest

from scratchgd import _checks, _files


def test_a_regular_file_opens_and_its_size_is_known(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc")
    assert _files.regular_size(path) == 3
    with _files.open_regular(path) as fh:
        assert fh.read() == b"abc"
    link = tmp_path / "link"
    link.symlink_to(path)
    assert _files.regular_size(link) == 3


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        _files.open_regular(tmp_path / "missing")


@pytest.mark.parametrize("make, kind", [
    (lambda p: p.mkdir(), "a folder"),
    (lambda p: os.mkfifo(p), "a FIFO"),
    (lambda p: socket.socket(socket.AF_UNIX).bind(str(p)), "a socket"),
])
def test_what_is_not_a_regular_file_is_named(tmp_path, make, kind):
    path = tmp_path / "thing"
    make(path)
    for call in (_files.regular_size, _files.open_regular):
        with pytest.raises(ValueError, match=f"^{path} is {kind}.*not a regular file"):
            call(path)


def test_a_device_is_refused_without_reading_it():
    with pytest.raises(ValueError, match="^/dev/zero is a character device"):
        _files.open_regular("/dev/zero")


def test_a_fifo_is_refused_without_blocking(tmp_path):
    """Opening a FIFO for reading blocks until a writer comes: a child that did would time out."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code = textwrap.dedent(f"""
        from scratchgd import _files
        try:
            _files.open_regular({str(fifo)!r})
        except ValueError as exc:
            print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "is a FIFO (named pipe), not a regular file" in out


def test_open_checks_the_descriptor_too(tmp_path, monkeypatch):
    """A path swapped for a FIFO after the stat is caught on the open descriptor, unblocked."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    monkeypatch.setattr(_files, "regular_size", lambda path: 0)
    with pytest.raises(ValueError, match="is a FIFO"):
        _files.open_regular(fifo)


def fake_cgroups(tmp_path, monkeypatch, mounts, groups, limits):
    """Point _files at a made-up mountinfo, cgroup list and limit files under ``tmp_path``."""
    (tmp_path / "mountinfo").write_text("".join(line + "\n" for line in mounts))
    (tmp_path / "cgroup").write_text("".join(line + "\n" for line in groups))
    for relative, text in limits.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    monkeypatch.setattr(_files, "MOUNTINFO", str(tmp_path / "mountinfo"))
    monkeypatch.setattr(_files, "CGROUP", str(tmp_path / "cgroup"))


def test_cgroup_v2_takes_the_smallest_of_the_own_group_and_its_ancestors(tmp_path, monkeypatch):
    fake_cgroups(tmp_path, monkeypatch,
                 [f"41 31 0:38 / {tmp_path}/cg rw,relatime - cgroup2 cgroup2 rw"],
                 ["0::/user/job"],
                 {"cg/user/job/memory.max": "max", "cg/user/memory.max": str(3 << 30)})
    assert _files.cgroup_limit() == 3 << 30
    fake_cgroups(tmp_path, monkeypatch,
                 [f"41 31 0:38 / {tmp_path}/cg rw,relatime - cgroup2 cgroup2 rw"],
                 ["0::/user/job"],
                 {"cg/user/job/memory.max": str(1 << 30), "cg/user/memory.max": "max"})
    assert _files.cgroup_limit() == 1 << 30


def test_cgroup_max_everywhere_is_no_limit(tmp_path, monkeypatch):
    fake_cgroups(tmp_path, monkeypatch,
                 [f"41 31 0:38 / {tmp_path}/cg rw,relatime - cgroup2 cgroup2 rw"],
                 ["0::/a"], {"cg/a/memory.max": "max"})
    assert _files.cgroup_limit() is None


def test_cgroup_v1_memory_hierarchy_relative_to_its_mount_root(tmp_path, monkeypatch):
    """A container sees its own cgroup as the mount's root: the path is taken relative to it."""
    fake_cgroups(tmp_path, monkeypatch,
                 [f"32 31 0:29 / {tmp_path}/cpu rw - cgroup cgroup rw,cpu",
                  f"35 31 0:32 /docker {tmp_path}/memory rw - cgroup cgroup rw,memory"],
                 ["4:memory:/docker/box", "1:cpu:/"],
                 {"memory/box/memory.limit_in_bytes": str(2 << 30),
                  "memory/memory.limit_in_bytes": "9223372036854771712",
                  "cpu/memory.limit_in_bytes": "1"})   # not the memory hierarchy: ignored
    assert _files.cgroup_limit() == 2 << 30


def test_no_cgroup_files_no_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(_files, "MOUNTINFO", str(tmp_path / "missing"))
    assert _files.cgroup_limit() is None


def test_memory_limit_is_the_smallest(monkeypatch):
    monkeypatch.setattr(_files, "physical_memory", lambda: 8 << 30)
    monkeypatch.setattr(_files, "cgroup_limit", lambda: None)
    monkeypatch.setattr(_files, "address_space_left", lambda: None)
    assert _files.memory_limit() == 8 << 30
    monkeypatch.setattr(_files, "cgroup_limit", lambda: 2 << 30)
    assert _files.memory_limit() == 2 << 30
    monkeypatch.setattr(_files, "address_space_left", lambda: 1 << 30)
    assert _files.memory_limit() == 1 << 30


def test_address_space_left_under_rlimit_as(monkeypatch, tmp_path):
    resource = pytest.importorskip("resource")
    page = os.sysconf("SC_PAGE_SIZE")
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1000 * page, resource.RLIM_INFINITY))
    (tmp_path / "statm").write_text("600 10 5 1 0 20 0\n")
    monkeypatch.setattr(_files, "STATM", str(tmp_path / "statm"))
    assert _files.address_space_left() == 400 * page
    monkeypatch.setattr(resource, "getrlimit",
                        lambda which: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert _files.address_space_left() is None


def test_a_real_ulimit_v_lowers_the_limit():
    """In a child under ``ulimit -v`` of 2 GiB the limit is below 2 GiB, and size checks use it."""
    code = textwrap.dedent("""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, resource.RLIM_INFINITY))
        from scratchgd import _checks, _files
        print(_files.memory_limit() < 2 << 30)
        try:
            _checks.fits_in_memory("n", 1, 3 << 30)
        except ValueError as exc:
            print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.splitlines()
    assert out[0] == "True"
    assert "memory this process may use" in out[1]


def test_size_checks_use_the_memory_limit(monkeypatch):
    monkeypatch.setattr(_files, "memory_limit", lambda: 1 << 20)
    _checks.fits_in_memory("n", 1, 1 << 20)
    with pytest.raises(ValueError, match="n=5 needs .* GiB, more than the .* GiB of memory"):
        _checks.fits_in_memory("n", 5, (1 << 20) + 1)
