"""Debian packages as the built-in corpus's only audio source.

The corpus is derived at build time from packages of a registry, so a fresh machine needs
nothing else: this module installs what is missing, lists a package's files, and collects
the licences that must travel with audio derived from them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import SekdError

COPYRIGHT_DIR = Path("/usr/share/doc")


def _require_dpkg() -> None:
    if shutil.which("dpkg") is None:
        raise SekdError("building the corpus needs a Debian-based system (dpkg and apt-get were not found)")


def missing_packages(packages: Iterable[str]) -> list[str]:
    """The packages of ``packages`` that dpkg does not report as installed."""
    _require_dpkg()
    missing = []
    for package in packages:
        result = subprocess.run(["dpkg", "-s", package], capture_output=True, text=True)
        if result.returncode != 0 or "Status: install ok installed" not in result.stdout:
            missing.append(package)
    return missing


def ensure_packages(packages: Sequence[str]) -> None:
    """Install the missing ones of ``packages`` with apt-get (as root, or with sudo).

    Runs ``apt-get update`` once, then one ``apt-get install``; apt's own output shows
    progress. Raises :class:`SekdError` naming the packages when they cannot be installed.
    """
    missing = missing_packages(packages)
    if not missing:
        return
    how = f"install them as root with: apt-get update && apt-get install -y {' '.join(missing)}"
    if os.geteuid() == 0:
        prefix = []
    elif shutil.which("sudo"):
        prefix = ["sudo", "-n"]  # never wait for a password: fail with the command to run instead
    else:
        raise SekdError(f"missing Debian packages {', '.join(missing)}; {how}")
    env = ["env", "DEBIAN_FRONTEND=noninteractive"]
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *missing]):
        if subprocess.run([*prefix, *env, *command]).returncode != 0:
            raise SekdError(f"`{' '.join(command)}` failed while installing {', '.join(missing)}; {how}")
    still = missing_packages(missing)
    if still:
        raise SekdError(f"Debian packages {', '.join(still)} are still missing after apt-get install; {how}")


def package_files(package: str) -> list[Path]:
    """The regular files that ``package`` installed, sorted."""
    _require_dpkg()
    result = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True)
    if result.returncode != 0:
        raise SekdError(f"dpkg -L {package} failed: {result.stderr.strip()}")
    return sorted(p for p in map(Path, result.stdout.splitlines()) if p.is_file())


def package_version(package: str) -> str:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def _dep5_summary(text: str) -> str:
    """Licence names and copyright holders of a machine-readable (DEP-5) copyright file."""
    licences: list[str] = []
    holders: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        field = None
        for line in paragraph.splitlines():
            if line[:1].isspace():  # continuation of the field above
                if field == "Copyright" and line.strip() not in ("", "."):
                    holders.append(line.strip())
                continue
            field, _, value = line.partition(":")
            if field == "Copyright" and value.strip():
                holders.append(value.strip())
            elif field == "License" and value.strip():
                licences.append(value.strip())
    lines = ["Licences: " + ", ".join(dict.fromkeys(licences)), "", "Copyright:", ""]
    lines += [f"- {holder}" for holder in dict.fromkeys(holders)]
    return "\n".join(lines)


def attribution_markdown(packages: Sequence[str]) -> str:
    """ATTRIBUTION.md for a corpus derived from ``packages``.

    Machine-readable copyright files are summarised (licence names and copyright lines);
    free-form ones are short and quoted whole. Packages with identical copyright files
    share one section.
    """
    sections: dict[str, list[str]] = {}
    for package in packages:
        path = COPYRIGHT_DIR / package / "copyright"
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        sections.setdefault(text, []).append(package)
    parts = [
        "# Attribution",
        "",
        "The audio of this corpus was derived at build time (decoded, trimmed, resampled, level-",
        "normalised, mixed, reverberated) from the Debian packages below. It is a derivative of their",
        "content: do not redistribute it without following their licences, quoted or summarised here",
        f"from {COPYRIGHT_DIR}/<package>/copyright (read that file for the full terms).",
    ]
    for text, names in sections.items():
        parts += ["", "## " + ", ".join(f"{name} ({package_version(name)})" for name in names), ""]
        if not text:
            parts.append("(no copyright file found)")
        elif text.startswith("Format:"):
            parts.append(_dep5_summary(text))
        else:
            parts += ["```", text.strip("\n"), "```"]
    return "\n".join(parts) + "\n"
