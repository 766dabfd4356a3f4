"""A real Orthanc PACS for tests: started from a temporary config, stopped by pid.

Orthanc 1.10 (Debian's package) has no bind-address setting and listens on all
interfaces; tests only ever send traffic to 127.0.0.1. HTTP authentication is
on, and only the AE titles the config names may query or retrieve.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

BINARY = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
USER, PASSWORD = "exporter", "s3cret-for-tests"
PACS_AET = "ORTHANC"
OUR_AET = "EXPORTER"


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Orthanc:
    """A running Orthanc: where it listens and how to reach it."""

    process: subprocess.Popen[bytes]
    root: Path
    http_port: int
    dicom_port: int
    store_port: int  # our storage SCP, known to Orthanc as OUR_AET (C-MOVE)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def rest(self, method: str, path: str, **kwargs: object) -> requests.Response:
        """A call to Orthanc's REST API, authenticated, failing on an error status."""
        response = requests.request(
            method,
            f"{self.url}{path}",
            auth=(USER, PASSWORD),
            timeout=30,
            **kwargs,  # type: ignore[arg-type]
        )
        response.raise_for_status()
        return response

    def upload(self, files: list[Path]) -> None:
        """Store ``files`` in Orthanc through its REST API."""
        for path in files:
            self.rest("POST", "/instances", data=path.read_bytes())

    def stop(self) -> None:
        """Stop Orthanc by its pid and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def start_again(self) -> None:
        """Start the same Orthanc (same storage and ports) after :meth:`stop`."""
        self.process = _launch(self.root)
        _wait_ready(self)


def available() -> bool:
    """Whether Orthanc and its DICOMweb plugin are installed here."""
    return Path(BINARY).exists() and Path(DICOMWEB_PLUGIN).exists()


def start(root: Path) -> Orthanc:
    """Write a config under ``root`` and start Orthanc on free loopback ports."""
    root.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port, store_port = free_port(), free_port(), free_port()
    config = {
        "Name": "exporter-tests",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "storage"),
        "Plugins": [DICOMWEB_PLUGIN],
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": PACS_AET,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "DicomModalities": {OUR_AET: [OUR_AET, "127.0.0.1", store_port]},
        "DicomAlwaysAllowFind": False,
        "DicomAlwaysAllowGet": False,
        "DicomAlwaysAllowMove": False,
        "DicomCheckCalledAet": True,
        "SaveJobs": False,
        "StableAge": 1,
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
        "HttpTimeout": 30,
    }
    (root / "orthanc.json").write_text(json.dumps(config, indent=2))
    server = Orthanc(_launch(root), root, http_port, dicom_port, store_port)
    try:
        _wait_ready(server)
    except Exception:
        server.stop()
        raise
    return server


def _launch(root: Path) -> subprocess.Popen[bytes]:
    log = open(root / "orthanc.log", "ab")  # noqa: SIM115 - the child keeps it
    return subprocess.Popen(
        [BINARY, str(root / "orthanc.json")],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
        env={**os.environ, "LANG": "C"},
    )


def _wait_ready(server: Orthanc, timeout: float = 60.0) -> None:
    """Poll ``GET /system`` until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            log = (server.root / "orthanc.log").read_text(errors="replace")
            raise RuntimeError(f"Orthanc exited at start:\n{log[-2000:]}")
        try:
            if server.rest("GET", "/system").status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"Orthanc did not answer within {timeout:.0f} s")
