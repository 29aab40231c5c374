"""roles/hef_compile/filter_plugins/hef_compile.py: the job's summary and log, and the
sha256sum files (hef_sha256sum.txt) on GPUSrv and on the controller."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible_local import load_plugin

REPO = Path(__file__).resolve().parents[1]
filters = load_plugin("roles/hef_compile/filter_plugins/hef_compile.py")

A, B, C = "a" * 64, "b" * 64, "0123456789abcdef" * 4


def job(output: str | None) -> dict[str, object]:
    """docker_container's result for a job that printed ``output``."""
    return {"status": 0, "container": {"Output": output}}


# --- the job's summary and log


def test_the_summary_is_the_last_json_line() -> None:
    out = '{"status": "starting"}\nwarning: slow\n{"status": "compiled", "changed": true}\n'
    assert filters.job_summary(job(out)) == {"status": "compiled", "changed": True}
    assert filters.job_log(job(out)) == ["warning: slow"]


def test_no_container_or_output_is_no_summary_and_no_log() -> None:
    for result in ({}, {"msg": "no image"}, {"container": None}, job(None), job(""), None):
        assert filters.job_summary(result) == {}
        assert filters.job_log(result) == []


def test_only_whole_lines_in_braces_are_json() -> None:
    out = ' {"indented": 1}\n{"trailing": 1} \nlog {"inline": 1}\n'
    assert filters.job_summary(job(out)) == {}
    assert filters.job_log(job(out)) == out.splitlines()


def test_a_broken_summary_says_so() -> None:
    with pytest.raises(ValueError, match="is not JSON"):
        filters.job_summary(job('{"status": "compiled"}\n{not json}\n'))


# --- sha256sum files


def test_text_and_binary_mode_lines_are_entries() -> None:
    text = f"{A}  model-1.0.hef\n{B} *model-1.0.golden.json\n"
    assert filters.parse_sums(text) == {"model-1.0.hef": A, "model-1.0.golden.json": B}


def test_other_lines_are_skipped() -> None:
    text = "\n".join(
        [
            "",
            "   ",
            "# a comment",
            f"{A.upper()}  upper.hef",  # sha256sum writes lowercase
            f"{A[:-1]}  short.hef",
            f"{A}x  long.hef",
            f"{A} one-space-only",  # neither "  " nor " *"
            f"{A}\ttab.hef",
            f"\\{A}  escaped\\nname",  # sha256sum's form for names with a newline
            f"{A}  ",  # no name
            f"{C}  kept.hef",
            "",
        ]
    )
    assert filters.parse_sums(text) == {"kept.hef": C}


def test_names_keep_their_spaces_and_the_last_line_wins() -> None:
    text = f"{A}  a name with  spaces \r\n{B}   leading-space\n{A}  dup\n{B}  dup"
    assert filters.parse_sums(text) == {
        "a name with  spaces ": A,
        " leading-space": B,
        "dup": B,
    }


def test_an_empty_file_has_no_entries() -> None:
    assert filters.parse_sums("") == {}


def test_anything_but_text_is_refused() -> None:
    with pytest.raises(TypeError, match="takes a sha256sum file's text, got NoneType"):
        filters.parse_sums(None)
    with pytest.raises(TypeError, match="got bytes"):
        filters.parse_sums(A.encode())


def test_merge_keeps_present_files_and_puts_ours_over_the_old_lines(tmp_path: Path) -> None:
    for name in ("other-0.9.hef", "model-1.0.hef"):
        (tmp_path / name).write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/nested.hef").write_text("x")
    text = "\n".join(
        [
            f"{A}  other-0.9.hef",  # still there: kept
            f"{A}  gone-0.8.hef",  # removed from the directory: dropped
            f"{A}  model-1.0.hef",  # ours: replaced
            f"{A} *model-1.0.golden.json",  # ours, not fetched yet: replaced all the same
            f"{A}  sub/nested.hef",  # not a plain name: dropped (the role writes none)
            f"{A}  sub",  # a directory: dropped
            "garbage",
        ]
    )
    ours = {"model-1.0.hef": B, "model-1.0.golden.json": C}
    assert filters.merge_sums(text, str(tmp_path), ours) == {"other-0.9.hef": A, **ours}


def test_merge_into_no_file_is_ours_alone(tmp_path: Path) -> None:
    assert filters.merge_sums("", str(tmp_path), {"m.hef": A}) == {"m.hef": A}


def test_the_filters_are_registered() -> None:
    assert set(filters.FilterModule().filters()) == {
        "hef_compile_job_summary",
        "hef_compile_job_log",
        "hef_compile_parse_sums",
        "hef_compile_merge_sums",
    }
