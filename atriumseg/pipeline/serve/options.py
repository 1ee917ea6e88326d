"""What ``atriumseg serve`` is told: where it listens, whom it accepts, where results go; parsed and checked once."""

from __future__ import annotations

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
        return cls(_ae_title(aet, "--send-to"), host, _port(port, f"--send-to {text!r}"))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"

    @property
    def key(self) -> str:
        """The destination as part of a file name."""
        return re.sub(r"[^\w.-]+", "_", str(self))


@dataclass(frozen=True)
class AllowRule:
    """A caller let in (``--allow AET[@HOST]``): its calling AE title, and its IP address when given."""

    ae_title: str
    host: str | None = None

    @classmethod
    def parse(cls, text: str) -> AllowRule:
        aet, at, host = text.partition("@")
        if at and not host:
            raise ValueError(f"--allow {text!r}: expected AET or AET@HOST, such as SCANNER@10.0.0.7")
        return cls(_ae_title(aet, "--allow"), host or None)

    def admits(self, ae_title: str, address: str) -> bool:
        return ae_title.strip() == self.ae_title and (self.host is None or self.host == address)

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
