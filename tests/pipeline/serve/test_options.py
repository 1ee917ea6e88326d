"""What ``atriumseg serve`` is told: destinations, callers let in, and the settings refused before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from atriumseg.cli import main
from atriumseg.cli import serve as serve_cli
from atriumseg.pipeline.serve.options import AllowRule, Destination, ServeOptions


@pytest.mark.parametrize(("text", "expected"), [
    ("PACS@127.0.0.1:4242", ("PACS", "127.0.0.1", 4242)),
    ("ORTHANC@pacs.example.org:104", ("ORTHANC", "pacs.example.org", 104)),
    ("A B@[::1]:11112", ("A B", "::1", 11112)),  # the brackets only delimit the address: a socket takes ::1
    ("PACS@[fd00:0:0::5]:104", ("PACS", "fd00::5", 104)),
])
def test_destinations_parse_and_print_back(text: str, expected: tuple) -> None:
    destination = Destination.parse(text)
    assert (destination.ae_title, destination.host, destination.port) == expected
    assert str(destination) == text.replace("fd00:0:0::5", "fd00::5")  # an IPv6 address printed in brackets
    assert Destination.parse(str(destination)) == destination


@pytest.mark.parametrize(("text", "says"), [
    ("PACS@127.0.0.1", "AET@HOST:PORT"), ("127.0.0.1:104", "AET@HOST:PORT"), ("PACS@host:0", "outside 1-65535"),
    ("PACS@host:x", "not a whole number"), ("A_TITLE_LONGER_THAN_16@h:1", "1-16 printable"),
    ("BACK\\SLASH@h:1", "without a backslash"), ("PACS@::1:104", "IPv6 address in brackets"),
    ("PACS@[pacs.example.org]:104", "not an IPv6 address in brackets"),
])
def test_bad_destinations_say_what_is_expected(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        Destination.parse(text)


def test_allow_rules_match_the_title_and_the_address_when_given() -> None:
    anywhere, pinned = AllowRule.parse("SCANNER"), AllowRule.parse("SCANNER@10.0.0.7")
    assert anywhere.admits("SCANNER", "10.9.9.9") and anywhere.admits("SCANNER ", "10.9.9.9")
    assert pinned.admits("SCANNER", "10.0.0.7") and not pinned.admits("SCANNER", "10.0.0.8")
    assert pinned.admits("SCANNER", "::ffff:10.0.0.7")  # as a listener on :: sees an IPv4 caller
    assert not anywhere.admits("SCANNER2", "10.0.0.7")
    with pytest.raises(ValueError, match="AET or AET@HOST"):
        AllowRule.parse("SCANNER@")


@pytest.mark.parametrize(("text", "host", "caller"), [
    ("SCANNER@fd00:0::7", "fd00::7", "fd00::7"), ("SCANNER@[fd00::7]", "fd00::7", "fd00:0:0::7"),
])
def test_an_ipv6_caller_is_matched_as_an_address_not_as_text(text: str, host: str, caller: str) -> None:
    rule = AllowRule.parse(text)
    assert rule.host == host and rule.admits("SCANNER", caller) and not rule.admits("SCANNER", "fd00::8")
    assert AllowRule.parse(str(rule)) == rule


@pytest.mark.parametrize("text", ["SCANNER@scanner01", "SCANNER@scanner01.example.org", "SCANNER@10.0.0.300"])
def test_an_allowed_host_that_is_not_an_ip_address_is_refused(text: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(ValueError, match=r"is not an IP address; a caller is pinned to the IP address"):
        AllowRule.parse(text)
    with pytest.raises(SystemExit):
        main(["serve", "--storage", str(tmp_path), "-o", str(tmp_path / "out"), "--allow", text])
    assert "is not an IP address" in capsys.readouterr().err


def test_nobody_is_let_in_unless_the_options_say_so(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nobody may send"):
        ServeOptions(storage=tmp_path, output=tmp_path)
    closed = ServeOptions(storage=tmp_path / "st", output=tmp_path / "out", watch=tmp_path / "in")
    assert not closed.dicom_door and not closed.admits("ANY", "127.0.0.1")
    listed = ServeOptions(storage=tmp_path, output=tmp_path, allow=(AllowRule("SCANNER"),))
    assert listed.dicom_door and listed.admits("SCANNER", "1.2.3.4") and not listed.admits("OTHER", "1.2.3.4")
    anyone = ServeOptions(storage=tmp_path, output=tmp_path, allow_any=True)
    assert anyone.admits("OTHER", "1.2.3.4")


@pytest.mark.parametrize(("changes", "says"), [
    ({"allow_any": True, "allow": (AllowRule("S"),)}, "exclude each other"),
    ({"allow_any": True, "series_timeout": -1}, "must be >= 0"),
    ({"allow_any": True, "keep_days": -2}, "--keep-days"),
    ({"allow_any": True, "tls_cert": Path("c.pem")}, "go together"),
    ({"allow_any": True, "ae_title": ""}, "1-16 printable"),
    ({"allow_any": True, "port": 70000}, "--port: port 70000 is outside 1-65535"),
    ({"allow_any": True, "tls_cert": Path("c.pem"), "tls_key": Path("k.pem")}, "--tls-cert c.pem: no such file"),
    ({"watch": Path("out")}, "--watch out is --output out or inside it"),
    ({"watch": Path("st/incoming")}, "--watch st/incoming is --storage st or inside it"),
])
def test_inconsistent_settings_are_refused_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        changes: dict, says: str) -> None:
    monkeypatch.chdir(tmp_path)  # the relative paths above are tmp_path's
    with pytest.raises(ValueError, match=says):
        ServeOptions(storage=Path("st"), output=Path("out"), **changes)


@pytest.mark.parametrize(("option", "value", "says"), [
    ("--keep-days", "a week", "expected a number of days, got 'a week'"),
    ("--keep-days", "-1", "expected 0 or more days, got '-1'"),
    ("--keep-days", "nan", "expected 0 or more days"),
    ("--series-timeout", "soon", "expected a number of seconds, got 'soon'"),
    ("--settle", "-0.5", "expected 0 or more seconds, got '-0.5'"),
])
def test_times_on_the_command_line_are_refused_in_their_own_unit(tmp_path: Path, capsys, option: str, value: str,
                                                                  says: str) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--storage", str(tmp_path), "-o", str(tmp_path / "out"), "--allow-any", option, value])
    assert f"{option}: {says}" in capsys.readouterr().err


def test_keep_days_takes_days() -> None:
    assert serve_cli._days("7") == 7.0 and serve_cli._days("0.5") == 0.5 and serve_cli._seconds("0") == 0.0
