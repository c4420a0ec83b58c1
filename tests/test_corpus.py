"""The corpus of broken prompt files: each must produce exactly the problems it declares.

Every file in tests/corpus/prompts/bad/ starts with one ``# expect: LINE|KEY|MESSAGE``
comment per problem it must produce; the test loads the file on its own (with the
corpus's partials) and compares the full set of errors.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from promptlib.library.loader import scan

CORPUS = Path(__file__).parent / "corpus" / "prompts"
FILES = sorted((CORPUS / "bad").glob("*.yaml"))


def expected(path: Path) -> set[tuple[int, str, str]]:
    out = set()
    for raw in path.read_bytes().decode("utf-8", "replace").splitlines():
        if not raw.startswith("# expect: "):
            break
        line, key, message = raw.removeprefix("# expect: ").split("|", 2)
        out.add((int(line), key, message))
    return out


def test_corpus_is_large_enough() -> None:
    assert len(FILES) >= 30


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_broken_file_reports_exactly_its_problems(path: Path) -> None:
    want = expected(path)
    assert want, f"{path.name} declares no expected problem"
    result = scan(CORPUS, [path])
    got = {(p.line, p.key, p.message) for p in result.problems}
    assert got == want
    assert not result.prompts


def test_all_problems_of_a_library_come_in_one_pass() -> None:
    result = scan(CORPUS)
    files_with_errors = {Path(p.path).name for p in result.problems}
    assert files_with_errors == {p.name for p in FILES}
    assert len(result.problems) == sum(len(expected(p)) for p in FILES)
