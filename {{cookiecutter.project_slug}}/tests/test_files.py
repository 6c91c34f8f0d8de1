"""files.py: whole files or none, and documents that are missing or malformed read as one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.errors import PipelineError
from {{ cookiecutter.package_name }}.files import read_document, write_atomically, write_json
from {{ cookiecutter.package_name }}.release.package import PackageError, read_gate


def test_a_failed_write_leaves_the_old_file_and_no_scratch_file(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    write_json(target, {"version": 1})
    with pytest.raises(TypeError):
        write_json(target, {"version": object()})  # json.dumps refuses: nothing is written
    assert target.read_text() == '{\n  "version": 1\n}\n'
    assert [path.name for path in tmp_path.iterdir()] == ["report.json"]


def test_write_atomically_replaces_the_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "card.md"
    write_atomically(target, "a long first version\n")
    write_atomically(target, "short\n")
    assert target.read_text() == "short\n"


@pytest.mark.parametrize(
    ("name", "text", "parsed"),
    [("gate.json", '{"passed": true}', {"passed": True}), ("state.yaml", "live: blue\n", {"live": "blue"})],
)
def test_a_document_is_parsed_by_its_suffix(tmp_path: Path, name: str, text: str, parsed: object) -> None:
    (tmp_path / name).write_text(text)
    assert read_document(tmp_path / name, PipelineError, "unused") == parsed


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("metrics.json", b'{"overall": {', "metrics.json is not valid JSON: Expecting property name"),
        ("deployment.yaml", b"live: [blue\n", "deployment.yaml is not valid YAML: while parsing"),
        ("metrics.json", b"\xff\xfe not text", "metrics.json is not valid JSON: 'utf-8' codec"),
    ],
)
def test_a_malformed_document_is_one_line(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(PipelineError) as raised:
        read_document(tmp_path / name, PipelineError, "unused")
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_missing_document_says_what_writes_it(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"gate\.json not found: run the gate stage"):
        read_document(tmp_path / "gate.json", PipelineError, "run the gate stage")


def test_package_refuses_a_torn_gate_report_with_one_line(tmp_path: Path) -> None:
    """What a killed writer of an older version left: the package stage says so instead of a traceback."""
    (tmp_path / "gate.json").write_text('{"passed": tr')
    with pytest.raises(PackageError, match=r"gate\.json is not valid JSON"):
        read_gate(tmp_path / "gate.json")
