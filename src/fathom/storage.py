"""Read and write files and folders by URI: local paths and ``s3://bucket/key`` on any S3-compatible store.

S3 access goes through the `minio` client (works with MinIO, SeaweedFS, Ceph RGW, AWS S3, moto). Endpoint, keys,
TLS and region come from :class:`StorageSettings` (environment variables ``FATHOM_S3_*``); keys are never logged.

Atomicity
    *Objects*: we rely on S3's own atomicity. A single PUT becomes visible only when it completes, and a multipart
    upload only when ``CompleteMultipartUpload`` succeeds; on any failure the minio client aborts the multipart
    upload (`Minio.put_object`), so a failed upload never leaves a partial object under the target key.
    *Folders*: every file is uploaded as above, then a manifest object ``<prefix>/_FATHOM_MANIFEST.json`` (file list,
    sizes, sha256) is written **last**. A folder "exists" only when its manifest exists, and a download of a folder
    with a manifest fetches exactly the listed files and checks their sizes. Re-uploading a folder replaces the
    manifest last and then removes objects the new manifest no longer lists.
    *Local targets*: written to a temporary sibling then renamed (`os.replace`), folders likewise.
    *Downloads*: written to a temporary sibling then renamed.

Retries
    Transient failures (connection errors, timeouts, HTTP 5xx, SlowDown/RequestTimeout/InternalError) are retried
    with exponential backoff (`StorageSettings.retries`); other errors raise :class:`StorageError` at once.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import shutil
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from fathom.errors import ConfigError, FathomError

log = logging.getLogger(__name__)

MANIFEST = "_FATHOM_MANIFEST.json"
T = TypeVar("T")

RETRYABLE_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "OperationAborted",
                   "RequestTimeTooSkewed", "XMinioServerNotInitialized"}


class StorageError(FathomError):
    """A storage operation failed (after retries when the failure was transient)."""

    def __init__(self, message: str, *, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


class StorageSettings(BaseSettings):
    """Connection to the S3-compatible object store (environment variables ``FATHOM_S3_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix="FATHOM_S3_", extra="ignore")

    endpoint: str | None = Field(default=None, description="host:port of the S3 API, or a URL "
                                 "(http://host:port selects plain HTTP, https:// selects TLS).")
    access_key: SecretStr | None = Field(default=None, description="Access key id.")
    secret_key: SecretStr | None = Field(default=None, description="Secret access key.")
    session_token: SecretStr | None = Field(default=None, description="Optional STS session token.")
    secure: bool = Field(default=True, description="Use TLS (ignored when `endpoint` carries a scheme).")
    cert_check: bool = Field(default=True, description="Verify the server's TLS certificate.")
    region: str | None = Field(default=None, description="Region (avoids a bucket-location lookup).")
    retries: int = Field(default=4, ge=0, description="Retries of a transient failure, exponential backoff.")
    connect_timeout_s: float = Field(default=10.0, gt=0, description="TCP connect timeout.")
    read_timeout_s: float = Field(default=300.0, gt=0, description="Socket read timeout.")
    part_size: int = Field(default=16 * 1024 * 1024, ge=5 * 1024 * 1024,
                           description="Multipart part size in bytes (files larger than one part use multipart).")
    create_bucket: bool = Field(default=True, description="Create the bucket on upload if it does not exist.")

    def host_and_tls(self) -> tuple[str, bool]:
        if not self.endpoint:
            raise ConfigError("s3:// URIs need FATHOM_S3_ENDPOINT (host:port or http(s)://host:port)")
        ep = self.endpoint.strip().rstrip("/")
        if ep.startswith("http://"):
            return ep.removeprefix("http://"), False
        if ep.startswith("https://"):
            return ep.removeprefix("https://"), True
        return ep, self.secure


def is_s3(uri: str | Path) -> bool:
    return isinstance(uri, str) and uri.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ("bucket", "a/b")."""
    if not is_s3(uri):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    rest = uri[len("s3://"):]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"s3 URI without a bucket: {uri!r}")
    return bucket, key.strip("/")


def _local(uri: str | Path) -> Path:
    s = str(uri)
    if s.startswith("file://"):
        s = s[len("file://"):]
    return Path(s).expanduser()


# --------------------------------------------------------------------------------------------------- S3 client
def make_s3_client(settings: StorageSettings | None = None):
    """A minio client with connect/read timeouts. urllib3-level retries are off: we retry whole operations."""
    import urllib3
    from minio import Minio

    settings = settings or StorageSettings()
    host, tls = settings.host_and_tls()
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=settings.connect_timeout_s, read=settings.read_timeout_s),
        retries=False, maxsize=16,
        cert_reqs="CERT_REQUIRED" if (tls and settings.cert_check) else "CERT_NONE",
    )
    secret = lambda s: s.get_secret_value() if s else None  # noqa: E731
    return Minio(host, access_key=secret(settings.access_key), secret_key=secret(settings.secret_key),
                 session_token=secret(settings.session_token), secure=tls, region=settings.region,
                 http_client=http, cert_check=settings.cert_check)


@lru_cache(maxsize=4)
def _cached_client(key: str):
    return make_s3_client(StorageSettings.model_validate_json(key))


def _client(settings: StorageSettings | None):
    settings = settings or StorageSettings()
    dump = settings.model_dump(mode="json")
    for k in ("access_key", "secret_key", "session_token"):  # SecretStr dumps masked: keep the real values
        v = getattr(settings, k)
        dump[k] = v.get_secret_value() if v else None
    return _cached_client(json.dumps(dump, sort_keys=True)), settings


def _is_retryable(exc: Exception) -> bool:
    from minio.error import S3Error, ServerError
    import urllib3

    if isinstance(exc, S3Error):
        return exc.code in RETRYABLE_CODES
    if isinstance(exc, ServerError):
        return True
    return isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError, OSError))


def _retry(what: str, fn: Callable[[], T], settings: StorageSettings) -> T:
    from minio.error import S3Error

    attempt = 0
    while True:
        try:
            return fn()
        except StorageError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below
            retryable = _is_retryable(exc)
            if not retryable or attempt >= settings.retries:
                code = exc.code if isinstance(exc, S3Error) else type(exc).__name__
                raise StorageError(f"{what}: {code}: {exc}", retryable=retryable) from exc
            delay = min(10.0, 0.2 * 2**attempt) * (1 + 0.25 * random.random())
            log.warning("%s failed (%s), retry %d in %.1fs", what, type(exc).__name__, attempt + 1, delay)
            time.sleep(delay)
            attempt += 1


def _ensure_bucket(client, bucket: str, settings: StorageSettings) -> None:
    if _retry(f"bucket_exists {bucket}", lambda: client.bucket_exists(bucket), settings):
        return
    if not settings.create_bucket:
        raise StorageError(f"bucket {bucket!r} does not exist (FATHOM_S3_CREATE_BUCKET=false)")
    from minio.error import S3Error

    try:
        client.make_bucket(bucket, location=settings.region) if settings.region else client.make_bucket(bucket)
    except S3Error as exc:
        if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise StorageError(f"make_bucket {bucket}: {exc.code}: {exc}") from exc


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _object_exists(client, bucket: str, key: str, settings: StorageSettings) -> bool:
    from minio.error import S3Error

    def stat() -> bool:
        try:
            client.stat_object(bucket, key)
            return True
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NoSuchBucket", "ResourceNotFound", "NotFound"):
                return False
            raise

    return _retry(f"stat s3://{bucket}/{key}", stat, settings)


def _list_keys(client, bucket: str, prefix: str, settings: StorageSettings) -> list[str]:
    from minio.error import S3Error

    def lst() -> list[str]:
        try:
            return [o.object_name for o in client.list_objects(bucket, prefix=prefix, recursive=True)]
        except S3Error as exc:
            if exc.code == "NoSuchBucket":
                return []
            raise

    return _retry(f"list s3://{bucket}/{prefix}", lst, settings)


# --------------------------------------------------------------------------------------------------- public API
def exists(uri: str | Path, *, settings: StorageSettings | None = None) -> bool:
    """A local file/folder exists; an S3 object exists, or an S3 folder whose manifest exists."""
    if not is_s3(uri):
        return _local(uri).exists()
    client, settings = _client(settings)
    bucket, key = split_s3(uri)
    if key and _object_exists(client, bucket, key, settings):
        return True
    return _object_exists(client, bucket, f"{key}/{MANIFEST}" if key else MANIFEST, settings)


def upload(local: str | Path, uri: str | Path, *, settings: StorageSettings | None = None) -> str:
    """Copy a local file or folder to `uri` (s3:// or a local path). Returns the URI written."""
    local = _local(local)
    if not local.exists():
        raise StorageError(f"upload: {local} does not exist")
    if not is_s3(uri):
        _copy_local(local, _local(uri))
        return str(uri)
    client, settings = _client(settings)
    bucket, key = split_s3(str(uri))
    _ensure_bucket(client, bucket, settings)
    if local.is_file():
        if not key:
            raise StorageError(f"upload of a file needs a key: {uri}")
        _put_file(client, bucket, key, local, settings)
        return str(uri)
    files = sorted(p for p in local.rglob("*") if p.is_file())
    manifest = {"version": 1, "created_at": time.time(), "files": []}
    for p in files:
        rel = p.relative_to(local).as_posix()
        if rel == MANIFEST:
            continue
        _put_file(client, bucket, _join(key, rel), p, settings)
        manifest["files"].append({"path": rel, "size": p.stat().st_size, "sha256": _sha256(p)})
    body = json.dumps(manifest, indent=1).encode()
    _put_bytes(client, bucket, _join(key, MANIFEST), body, settings)  # last: marks the folder complete
    listed = {_join(key, f["path"]) for f in manifest["files"]} | {_join(key, MANIFEST)}
    for stale in _list_keys(client, bucket, f"{key}/" if key else "", settings):
        if stale not in listed:
            _retry(f"remove s3://{bucket}/{stale}", lambda s=stale: client.remove_object(bucket, s), settings)
    return str(uri)


def download(uri: str | Path, local: str | Path, *, settings: StorageSettings | None = None) -> Path:
    """Copy a file or folder from `uri` to `local` (atomically). Returns `local`."""
    local = _local(local)
    if not is_s3(uri):
        src = _local(uri)
        if not src.exists():
            raise StorageError(f"download: {src} does not exist")
        _copy_local(src, local)
        return local
    client, settings = _client(settings)
    bucket, key = split_s3(str(uri))
    if key and _object_exists(client, bucket, key, settings):
        local.parent.mkdir(parents=True, exist_ok=True)
        _get_file(client, bucket, key, local, settings)
        return local
    man_key = _join(key, MANIFEST)
    if _object_exists(client, bucket, man_key, settings):
        manifest = json.loads(_get_bytes(client, bucket, man_key, settings))
        entries = [(f["path"], f.get("size")) for f in manifest["files"]]
    else:
        prefix = f"{key}/" if key else ""
        keys = _list_keys(client, bucket, prefix, settings)
        if not keys:
            raise StorageError(f"download: {uri} does not exist")
        log.warning("%s has no manifest (not written by fathom.storage?): downloading every object", uri)
        entries = [(k[len(prefix):], None) for k in keys]
    tmp = local.with_name(local.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, size in entries:
        dest = tmp / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        _get_file(client, bucket, _join(key, rel), dest, settings)
        if size is not None and dest.stat().st_size != size:
            raise StorageError(f"download {uri}/{rel}: size {dest.stat().st_size} != manifest {size}")
    if local.exists():
        shutil.rmtree(local) if local.is_dir() else local.unlink()
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(local)
    return local


def read_bytes(uri: str | Path, *, settings: StorageSettings | None = None) -> bytes:
    if not is_s3(uri):
        return _local(uri).read_bytes()
    client, settings = _client(settings)
    bucket, key = split_s3(str(uri))
    return _get_bytes(client, bucket, key, settings)


def write_bytes(uri: str | Path, data: bytes, *, settings: StorageSettings | None = None) -> None:
    if not is_s3(uri):
        path = _local(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return
    client, settings = _client(settings)
    bucket, key = split_s3(str(uri))
    _ensure_bucket(client, bucket, settings)
    _put_bytes(client, bucket, key, data, settings)


def read_text(uri: str | Path, *, settings: StorageSettings | None = None) -> str:
    return read_bytes(uri, settings=settings).decode("utf-8")


def write_text(uri: str | Path, text: str, *, settings: StorageSettings | None = None) -> None:
    write_bytes(uri, text.encode("utf-8"), settings=settings)


def localize(uri: str | Path, cache_dir: Path | None = None, *, settings: StorageSettings | None = None) -> Path:
    """A local path for `uri`: local paths pass through; s3:// URIs are downloaded under `cache_dir`."""
    if not is_s3(uri):
        return _local(uri)
    from fathom.config import fathom_home

    bucket, key = split_s3(str(uri))
    dest = (cache_dir or fathom_home() / "s3") / bucket / (key or "_root")
    return download(uri, dest, settings=settings)


# --------------------------------------------------------------------------------------------------- helpers
def _join(prefix: str, rel: str) -> str:
    return f"{prefix}/{rel}" if prefix else rel


def _put_file(client, bucket: str, key: str, path: Path, settings: StorageSettings) -> None:
    _retry(f"put s3://{bucket}/{key}",
           lambda: client.fput_object(bucket, key, str(path), part_size=settings.part_size), settings)


def _put_bytes(client, bucket: str, key: str, data: bytes, settings: StorageSettings) -> None:
    _retry(f"put s3://{bucket}/{key}",
           lambda: client.put_object(bucket, key, io.BytesIO(data), len(data)), settings)


def _get_file(client, bucket: str, key: str, dest: Path, settings: StorageSettings) -> None:
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    _retry(f"get s3://{bucket}/{key}", lambda: client.fget_object(bucket, key, str(dest), tmp_file_path=str(tmp)),
           settings)


def _get_bytes(client, bucket: str, key: str, settings: StorageSettings) -> bytes:
    def get() -> bytes:
        resp = client.get_object(bucket, key)
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    return _retry(f"get s3://{bucket}/{key}", get, settings)


def _copy_local(src: Path, dest: Path) -> None:
    if src.resolve() == dest.resolve():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    if src.is_dir():
        shutil.copytree(src, tmp)
        if dest.exists():
            old = dest.with_name(f".{dest.name}.{os.getpid()}.old")
            dest.rename(old)
            tmp.rename(dest)
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
        else:
            tmp.rename(dest)
    else:
        shutil.copy2(src, tmp)
        os.replace(tmp, dest)
