"""A local S3 server (moto) for tests and the demo: loopback only, new bucket,
and the storage options that point s3fs at it."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CREDENTIALS = {"key": "testing", "secret": "testing"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_s3(bucket: str = "flair") -> Iterator[dict[str, Any]]:
    """Run a moto S3 server on 127.0.0.1 with ``bucket`` created; yields the
    s3fs storage options (endpoint and dummy credentials)."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = _free_port()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id=CREDENTIALS["key"], aws_secret_access_key=CREDENTIALS["secret"],
        ).create_bucket(Bucket=bucket)
        yield {"endpoint_url": endpoint, **CREDENTIALS}
    finally:
        server.stop()


class RequestLog(logging.Handler):
    """The requests the local S3 server receives ("GET /bucket/key"), while attached."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if '"' in message:
            self.requests.append(message.split('"')[1].rsplit(" ", 1)[0])

    def __enter__(self) -> RequestLog:
        log = logging.getLogger("werkzeug")
        log.addHandler(self)
        log.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: object) -> None:
        log = logging.getLogger("werkzeug")
        log.removeHandler(self)
        log.setLevel(logging.ERROR)
