"""What ``atriumseg serve`` is told: where it listens, whom it accepts, where results go; parsed and checked once."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

AE_TITLE = re.compile(r"^[\x21-\x5b\x5d-\x7e ]{1,16}$")  # printable, no backslash, at most 16 characters
DEFAULT_AE_TITLE = "ATRIUMSEG"
DEFAULT_PORT = 11112  # the IANA-registered DICOM port
DEFAULT_SERIES_TIMEOUT = 10.0
DEFAULT_SETTLE = 10.0
PAUSE_AFTER_ERROR = 5.0  # seconds a background loop waits after a pass that raised (logged) before the next


def _ae_title(text: str, what: str) -> str:
    title = text.strip()
    if not AE_TITLE.match(title):
        raise ValueError(f"{what}: AE title {text!r} must be 1-16 printable characters without a backslash")
    return title


def _port(text: str, what: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"{what}: port {text!r} is not a whole number") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{what}: port {port} is outside 1-65535")
    return port


def _host(text: str, what: str) -> str:
    """A destination's host: a name or an IP address; an IPv6 address comes in brackets (``[fd00::5]``), which are
    taken off (a socket connects to ``fd00::5``, not ``[fd00::5]``)."""
    if text.startswith("[") and text.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(text[1:-1]))
        except ValueError:
            raise ValueError(f"{what}: {text!r} is not an IPv6 address in brackets") from None
    if any(c in text for c in ":[]"):
        raise ValueError(f"{what}: host {text!r}: write an IPv6 address in brackets, such as PACS@[fd00::5]:104")
    return text


def _ip(text: str, what: str) -> str:
    """An allowed caller's IP address, as Python writes it (brackets around an IPv6 address are taken off); a host
    name is refused, since a caller is matched by the address it connects from."""
    try:
        return str(ipaddress.ip_address(text.removeprefix("[").removesuffix("]")))
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not an IP address; a caller is pinned to the IP address it connects "
                         "from, such as SCANNER@10.0.0.7") from None


def _same_ip(allowed: str, address: str) -> bool:
    """Whether a caller's address is ``allowed`` (an IPv4 caller seen by an IPv6 listener as ::ffff:a.b.c.d too)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ipaddress.ip_address(allowed) in (ip, mapped)


@dataclass(frozen=True)
class Destination:
    """A DICOM node results are sent to (``--send-to AET@HOST:PORT``)."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Destination:
        aet, at, address = text.rpartition("@")
        host, colon, port = address.rpartition(":")
        if not (at and colon and host):
            raise ValueError(f"--send-to {text!r}: expected AET@HOST:PORT, such as PACS@10.0.0.5:104")
        return cls(_ae_title(aet, "--send-to"), _host(host, f"--send-to {text!r}"), _port(port, f"--send-to {text!r}"))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.ae_title}@{host}:{self.port}"

    @property
    def key(self) -> str:
        """The destination as part of a file name."""
        return re.sub(r"[^\w.-]+", "_", str(self))


@dataclass(frozen=True)
class AllowRule:
    """A caller let in (``--allow AET[@HOST]``): its calling AE title, and its IP address when given (HOST must be
    an IP address: the caller's address is what is compared)."""

    ae_title: str
    host: str | None = None

    def __post_init__(self) -> None:
        if self.host is not None:
            object.__setattr__(self, "host", _ip(self.host, f"--allow {self.ae_title}@{self.host}"))

    @classmethod
    def parse(cls, text: str) -> AllowRule:
        aet, at, host = text.partition("@")
        if at and not host:
            raise ValueError(f"--allow {text!r}: expected AET or AET@HOST, such as SCANNER@10.0.0.7")
        return cls(_ae_title(aet, "--allow"), host or None)

    def admits(self, ae_title: str, address: str) -> bool:
        return ae_title.strip() == self.ae_title and (self.host is None or _same_ip(self.host, address))

    def __str__(self) -> str:
        return self.ae_title + (f"@{self.host}" if self.host else "")


@dataclass(frozen=True)
class ServeOptions:
    """A service's settings. The DICOM door opens only when someone may call: ``allow`` rules or ``allow_any``.

    ``keep_days`` None keeps received instances for ever; ``mesh`` is a mesh format or None.
    """

    storage: Path
    output: Path
    ae_title: str = DEFAULT_AE_TITLE
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    send_to: tuple[Destination, ...] = ()
    allow: tuple[AllowRule, ...] = ()
    allow_any: bool = False
    series_timeout: float = DEFAULT_SERIES_TIMEOUT
    watch: Path | None = None
    settle: float = DEFAULT_SETTLE
    keep_days: float | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    qc: bool = False
    probabilities: bool = False
    mesh: str | None = None
    retry_seconds: tuple[float, float] = field(default=(5.0, 600.0))  # first wait and longest wait between tries

    def __post_init__(self) -> None:
        object.__setattr__(self, "ae_title", _ae_title(self.ae_title, "--ae-title"))
        if not (self.allow or self.allow_any or self.watch):
            raise ValueError("nobody may send: give --allow AET[@HOST] for each sender (or --allow-any on a "
                             "closed network), or --watch DIR for the folder door alone")
        if self.allow and self.allow_any:
            raise ValueError("--allow and --allow-any exclude each other: --allow-any admits everyone")
        if self.series_timeout < 0 or self.settle < 0:
            raise ValueError(f"--series-timeout {self.series_timeout} and --settle {self.settle} must be >= 0 seconds")
        if self.keep_days is not None and self.keep_days < 0:
            raise ValueError(f"--keep-days {self.keep_days} must be >= 0")
        _port(str(self.port), "--port")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together: give both (PEM files) or neither")
        for flag, pem in (("--tls-cert", self.tls_cert), ("--tls-key", self.tls_key)):
            if pem is not None and not Path(pem).is_file():
                raise ValueError(f"{flag} {pem}: no such file")
        for flag, folder in (("--output", self.output), ("--storage", self.storage)):
            if self.watch is not None and Path(self.watch).resolve().is_relative_to(Path(folder).resolve()):
                raise ValueError(f"--watch {self.watch} is {flag} {folder} or inside it: what the service writes "
                                 "there would be taken as new inputs; watch a folder of its own")

    @property
    def dicom_door(self) -> bool:
        """Whether the DICOM listener runs: only when someone may call."""
        return bool(self.allow) or self.allow_any

    def admits(self, ae_title: str, address: str) -> bool:
        """Whether a caller (calling AE title, IP address) may open an association."""
        return self.allow_any or any(rule.admits(ae_title, address) for rule in self.allow)
