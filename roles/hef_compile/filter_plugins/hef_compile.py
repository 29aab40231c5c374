"""Decisions of the hef_compile role, as filters (tests/test_hef_compile_filters.py).

hef_compile_job_summary / hef_compile_job_log: the compile job's JSON summary (the last
line of its output that is a JSON object) and the rest of its output.
hef_compile_parse_sums: a sha256sum file (hef_sha256sum.txt) as {name: sha256}.
hef_compile_merge_sums: the controller's entries updated with this compile's files.
"""

from __future__ import annotations

import json
import os.path
import re
from collections.abc import Mapping
from typing import Any

# A line of `sha256sum` output: "<hex>  <name>" (text mode) or "<hex> *<name>" (binary).
# Other lines (blank, comments, uppercase hex, sha256sum's backslash-escaped names) are
# not entries and are skipped, as `sha256sum -c` skips them with a warning.
_SUM_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")
# A line of the job's output that is its summary (compiler/: one JSON object per line).
_SUMMARY_LINE = re.compile(r"^[{].*[}]$")


def _job_lines(job: Any) -> list[str]:
    """The job's output (docker_container's container.Output), as lines; none when the
    container did not run."""
    container = (job or {}).get("container") if isinstance(job, Mapping) else None
    output = container.get("Output") if isinstance(container, Mapping) else None
    return str(output or "").splitlines()


def job_summary(job: Any) -> dict[str, Any]:
    """The last line of the job's output that is a JSON object, parsed; {} when none."""
    lines = [line for line in _job_lines(job) if _SUMMARY_LINE.match(line)]
    if not lines:
        return {}
    try:
        # A line in braces that parses is an object.
        return json.loads(lines[-1])
    except ValueError as err:
        raise ValueError(
            f"hef-compile's summary (the last line of its output that looks like JSON) is not "
            f"JSON: {err}: {lines[-1][:200]}"
        ) from err


def job_log(job: Any) -> list[str]:
    """The job's output without its JSON lines (what a person reads when it failed)."""
    return [line for line in _job_lines(job) if not _SUMMARY_LINE.match(line)]


def parse_sums(text: Any) -> dict[str, str]:
    """{name: sha256} of a sha256sum file's text; a name listed twice keeps its last line."""
    if not isinstance(text, str):
        raise TypeError(
            f"hef_compile_parse_sums takes a sha256sum file's text, got {type(text).__name__}"
        )
    entries: dict[str, str] = {}
    for line in text.splitlines():
        match = _SUM_LINE.match(line)
        if match:
            entries[match.group(2)] = match.group(1)
    return entries


def merge_sums(text: Any, directory: str, updates: Mapping[str, str]) -> dict[str, str]:
    """The entries of ``text`` (the controller's sha256sum file in ``directory``) whose
    files are still in ``directory``, with ``updates`` ({name: sha256}) over them: so
    `sha256sum -c` passes there and other artifacts' lines stay. Only plain file names
    count (the role writes no others): a name with a "/" is dropped."""
    merged = {
        name: sha
        for name, sha in parse_sums(text).items()
        if name not in updates and "/" not in name and os.path.isfile(f"{directory}/{name}")
    }
    merged.update(updates)
    return merged


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "hef_compile_job_summary": job_summary,
            "hef_compile_job_log": job_log,
            "hef_compile_parse_sums": parse_sums,
            "hef_compile_merge_sums": merge_sums,
        }
