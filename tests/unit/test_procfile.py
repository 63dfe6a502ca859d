from __future__ import annotations

import pytest

from paas.errors import InvalidInput
from paas.procfile import parse_procfile


def test_parses_types_comments_blank_lines_crlf_and_colons() -> None:
    text = (
        "# processes\r\n"
        "\r\n"
        "web: gunicorn app:app --bind 0.0.0.0:$PORT\r\n"
        "worker:python -m worker\r\n"
        "  release :  alembic upgrade head  \r\n"
    )
    assert parse_procfile(text) == {
        "web": "gunicorn app:app --bind 0.0.0.0:$PORT",
        "worker": "python -m worker",
        "release": "alembic upgrade head",
    }


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("web gunicorn app", 1),
        ("web: ok\nbad line here", 2),
        ("web:", 1),
        ("web: a\nweb: b", 2),
        ("we b: x", 1),
        ("web: a\n9lives: x", 2),
        ("x" * 31 + ": long", 1),
    ],
)
def test_malformed_lines_are_named(text: str, line: int) -> None:
    with pytest.raises(InvalidInput, match=f"line {line}"):
        parse_procfile(text)


def test_any_type_name_is_a_process_type() -> None:
    """Types other than web and release are free-form (worker, beat, clock...);
    names are case-insensitive."""
    assert parse_procfile("\ufeffweb: a\n") == {"web": "a"}  # a byte-order mark is dropped
    assert parse_procfile("Worker: python -m w\nclock: python clock.py\nbeat_2: celery beat") == {
        "worker": "python -m w",
        "clock": "python clock.py",
        "beat_2": "celery beat",
    }


def test_at_most_ten_process_types() -> None:
    ten = "".join(f"p{i}: run {i}\n" for i in range(10))
    assert len(parse_procfile(ten)) == 10
    with pytest.raises(InvalidInput, match="line 11: more than 10 process types"):
        parse_procfile(ten + "extra: run\n")
