from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.utils import translation

from tests.bounces.samples import ARF, AUTO_REPLY, QMAIL, dsn


@pytest.fixture(autouse=True)
def english():
    with translation.override("en"):
        yield


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("bounces", *args, stdout=out)
    return out.getvalue()


def test_parse_prints_each_file_as_given_with_its_failures(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "dsn.eml").write_bytes(
        dsn(
            ("gone@example.com", "failed", "5.1.1", "550 5.1.1 User unknown"),
            ("later@example.com", "delayed", "4.4.7", "421 4.4.7 try later"),
            ("spam@example.com", "failed", "5.7.1", "Message rejected as spam"),
        )
    )
    (tmp_path / "qmail.eml").write_bytes(QMAIL)
    (tmp_path / "away.eml").write_bytes(AUTO_REPLY)
    (tmp_path / "arf.eml").write_bytes(ARF)
    (tmp_path / "delay.eml").write_bytes(dsn(("slow@example.com", "delayed", "4.2.2", "")))

    out = run("parse", "sub/dsn.eml", "./qmail.eml", "away.eml", "arf.eml", "delay.eml", "--json")

    assert json.loads(out) == {
        "sub/dsn.eml": [
            {
                "recipient": "gone@example.com",
                "status": "5.1.1",
                "reply_code": "550",
                "kind": "unknown_user",
                "hard": True,
            },
            {
                "recipient": "spam@example.com",
                "status": "5.7.1",
                "reply_code": "",
                "kind": "spam",
                "hard": False,
            },
        ],
        "./qmail.eml": [
            {
                "recipient": "gone@example.jp",
                "status": "5.1.1",
                "reply_code": "550",
                "kind": "unknown_user",
                "hard": True,
            },
            {
                "recipient": "full@example.jp",
                "status": "5.2.2",
                "reply_code": "552",
                "kind": "mailbox_full",
                "hard": False,
            },
        ],
        "away.eml": [],
        "arf.eml": [],
        "delay.eml": [],
    }


def test_parse_without_json_prints_a_line_per_file(tmp_path):
    path = tmp_path / "arf.eml"
    path.write_bytes(ARF)
    assert run("parse", str(path)) == f"{path}\tcomplaint\n"


def test_parse_rejects_a_missing_file_before_printing_anything(tmp_path):
    good = tmp_path / "qmail.eml"
    good.write_bytes(QMAIL)
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"^No such file: .*missing\.eml$"):
        call_command(
            "bounces", "parse", str(good), str(tmp_path / "missing.eml"), "--json", stdout=out
        )
    assert out.getvalue() == ""


def test_parse_rejects_a_directory(tmp_path):
    with pytest.raises(CommandError, match=r"^Not a file: "):
        run("parse", str(tmp_path))


def test_the_okuru_command_prints_json(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "qmail.eml"
    path.write_bytes(QMAIL)
    okuru = Path(sys.executable).parent / "okuru"
    done = subprocess.run(
        [str(okuru), "bounces", "parse", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert [f["recipient"] for f in json.loads(done.stdout)[str(path)]] == [
        "gone@example.jp",
        "full@example.jp",
    ]
