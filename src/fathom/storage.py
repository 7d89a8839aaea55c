"""Read and write files and folders by URI: local paths and ``s3://bucket/key`` on any S3-compatible store.

S3 access goes through the `minio` client (works with MinIO, SeaweedFS, Ceph RGW, AWS S3, moto). Endpoint, keys,
TLS and region come from :class:`StorageSettings` (environment variables ``FATHOM_S3_*``); keys are never logged.

Atomicity
    *Objects*: a single PUT becomes visible only when it completes, and a multipart upload only when
    ``CompleteMultipartUpload`` succeeds; on a failure the client aborts the multipart upload, and orphans of a killed
    upload are aborted when their folder is next published.
    *Folders* are published, never overwritten in place: the files go under a fresh version prefix
    ``<prefix>/_v/<version>/``, then the manifest ``<prefix>/_FATHOM_MANIFEST.json`` (version prefix, file list,
    sizes, sha256) is written **last** — that single PUT is the publication. A folder "exists" only when its manifest
    does, and a download reads only through a complete manifest: it fetches exactly the listed files, checks each
    size and sha256, and refuses a folder without a manifest (a half upload). After publishing, version prefixes
    other than the new one and the one it replaced are deleted, so a reader still on the previous version finishes.
    *Paths*: every path from a manifest or an object listing is confined to the download target (resolved, then
    refused with :class:`UnsafePathError` if it leaves the target: absolute paths, ``..``, links).
    *Local writes*: :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_write_json` /
    :func:`atomic_path` are the project's one atomic-write helper (a unique temporary sibling, fsync, ``os.replace``;
    the temporary is removed on failure). Downloads use it too, so a failed download leaves no ``.part`` behind.

Retries
    Transient failures (connection errors, timeouts, HTTP 5xx, SlowDown/RequestTimeout/InternalError) are retried
    with exponential backoff (`StorageSettings.retries`); other errors raise :class:`StorageError` at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import random
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from fathom.errors import ConfigError, FathomError

log = logging.getLogger(__name__)

MANIFEST = "_FATHOM_MANIFEST.json"
VERSIONS = "_v"  # folder versions live under <prefix>/_v/<version>/
T = TypeVar("T")

RETRYABLE_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "OperationAborted",
                   "RequestTimeTooSkewed", "XMinioServerNotInitialized"}


class StorageError(FathomError):
    """A storage operation failed (after retries when the failure was transient)."""

    def __init__(self, message: str, *, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


class UnsafePathError(StorageError):
    """A path from a manifest or an object listing that would land outside the download target."""


class IntegrityError(StorageError):
    """A downloaded file whose size or sha256 differs from its manifest entry."""


# --------------------------------------------------------------------------------------------------- local writes
def _tmp_sibling(path: Path, suffix: str = ".tmp") -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{suffix}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_path(path: str | Path, *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write (a file or a folder); on success it replaces ``path``
    (a folder is swapped in with two renames), on failure it is removed. The parent folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path, suffix)
    try:
        yield tmp
        if tmp.is_dir() and not tmp.is_symlink():
            replace_dir(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def replace_dir(src: Path, dest: Path) -> None:
    """Move the finished folder ``src`` to ``dest``, replacing what is there (old one renamed aside, then removed)."""
    src, dest = Path(src), Path(dest)
    if dest.exists() or dest.is_symlink():
        old = _tmp_sibling(dest, ".old")
        os.rename(dest, old)
        try:
            os.rename(src, dest)
        except BaseException:
            os.rename(old, dest)
            raise
        _remove(old)
    else:
        os.rename(src, dest)


def atomic_write_bytes(path: str | Path, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically: readers see the old file or the new one, never a part."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())


def atomic_write_text(path: str | Path, text: str, *, fsync: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = 2, fsync: bool = True, **kw: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, **kw), fsync=fsync)


def confined_path(root: str | Path, rel: str) -> Path:
    """``root / rel`` resolved, or :class:`UnsafePathError` when it is not strictly inside ``root`` (absolute
    paths, ``..`` components, drive letters, NUL bytes, links pointing out)."""
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise UnsafePathError(f"unsafe path {rel!r}: empty or not a string")
    if rel.startswith(("/", "\\")) or (len(rel) > 1 and rel[1] == ":") or any(
            part == ".." for part in rel.replace("\\", "/").split("/")):
        raise UnsafePathError(f"unsafe path {rel!r}: absolute or leaves its folder")
    base = Path(root).resolve()
    dest = (base / rel).resolve()
    if dest == base or not dest.is_relative_to(base):
        raise UnsafePathError(f"unsafe path {rel!r}: resolves to {dest}, outside {base}")
    return dest


class StorageSettings(BaseSettings):
    """Connection to the S3-compatible object store (environment variables ``FATHOM_S3_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix="FATHOM_S3_", extra="ignore", populate_by_name=True)

    endpoint: str | None = Field(default=None, description="host:port of the S3 API, or a URL "
                                 "(http://host:port selects plain HTTP, https:// selects TLS).")
    access_key: SecretStr | None = Field(default=None, description="Access key id.")
    secret_key: SecretStr | None = Field(default=None, description="Secret access key.")
    session_token: SecretStr | None = Field(default=None, description="Optional STS session token.")
    web_identity_token_file: str | None = Field(
        default=None, validation_alias=AliasChoices("FATHOM_S3_WEB_IDENTITY_TOKEN_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE"),
        description="Web identity (OIDC) token file; with `role_arn` and no static keys, credentials come from STS "
                    "AssumeRoleWithWebIdentity (EKS IRSA sets AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN).")
    role_arn: str | None = Field(default=None, validation_alias=AliasChoices("FATHOM_S3_ROLE_ARN", "AWS_ROLE_ARN"),
                                 description="Role assumed with the web identity token.")
    sts_endpoint: str | None = Field(default=None, description="STS endpoint for the web identity exchange "
                                     "(default: AWS STS of `region`; MinIO: the MinIO URL).")
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
    credentials = None if settings.access_key else web_identity_provider(settings)
    return Minio(host, access_key=secret(settings.access_key), secret_key=secret(settings.secret_key),
                 session_token=secret(settings.session_token), secure=tls, region=settings.region,
                 http_client=http, cert_check=settings.cert_check, credentials=credentials)


def web_identity_provider(settings: StorageSettings):
    """A minio credentials provider for web identity (IRSA: a projected service-account token + a role ARN), or
    None when the settings hold no web identity. The token file is re-read on every refresh (it rotates)."""
    if not settings.web_identity_token_file:
        return None
    if not settings.role_arn:
        raise ConfigError("a web identity token file (AWS_WEB_IDENTITY_TOKEN_FILE) needs a role (AWS_ROLE_ARN)")
    from minio.credentials.providers import WebIdentityProvider

    token_file = settings.web_identity_token_file

    def jwt() -> dict[str, str]:
        try:
            return {"access_token": Path(token_file).read_text().strip(), "expires_in": "0"}
        except OSError as exc:
            raise ConfigError(f"cannot read the web identity token file {token_file}: {exc}") from exc

    region = settings.region or os.environ.get("AWS_REGION")
    sts = settings.sts_endpoint or (f"https://sts.{region}.amazonaws.com" if region else "https://sts.amazonaws.com")
    return WebIdentityProvider(jwt_provider_func=jwt, sts_endpoint=sts, role_arn=settings.role_arn,
                               role_session_name="fathom")


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
    """Copy a local file or folder to `uri` (s3:// or a local path). Returns the URI written. A folder is
    published atomically under a fresh version prefix, its manifest written last (module doc)."""
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
    man_key = _join(key, MANIFEST)
    previous = _read_manifest(client, bucket, man_key, settings, missing_ok=True)
    version = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:12]}"
    vprefix = f"{VERSIONS}/{version}"
    manifest: dict[str, Any] = {"version": 2, "prefix": vprefix, "created_at": time.time(), "files": []}
    for p in sorted(p for p in local.rglob("*") if p.is_file()):
        rel = p.relative_to(local).as_posix()
        digest, size = _sha256(p), p.stat().st_size
        _put_file(client, bucket, _join(key, f"{vprefix}/{rel}"), p, settings)
        manifest["files"].append({"path": rel, "size": size, "sha256": digest})
    body = json.dumps(manifest, indent=1).encode()
    _put_bytes(client, bucket, man_key, body, settings)  # last: this PUT publishes the folder
    keep = {vprefix}
    if previous is not None and previous.get("prefix"):
        keep.add(previous["prefix"])  # a reader still downloading the previous version can finish
    _collect_garbage(client, bucket, key, keep, settings)
    return str(uri)


def _collect_garbage(client, bucket: str, key: str, keep: set[str], settings: StorageSettings) -> None:
    """Best effort: delete objects under ``key`` that no kept version owns (older versions, files of an
    unversioned layout) and abort incomplete multipart uploads left under them by killed uploads."""
    base = f"{key}/" if key else ""
    keep_prefixes = tuple(f"{base}{k}/" for k in keep)
    try:
        for obj in _list_keys(client, bucket, base, settings):
            if obj == _join(key, MANIFEST) or obj.startswith(keep_prefixes):
                continue
            _retry(f"remove s3://{bucket}/{obj}", lambda o=obj: client.remove_object(bucket, o), settings)
        _abort_incomplete(client, bucket, base, keep_prefixes, settings)
    except StorageError as exc:
        log.warning("cleaning old versions under s3://%s/%s failed (harmless): %s", bucket, key, exc)


def _abort_incomplete(client, bucket: str, prefix: str, keep_prefixes: tuple[str, ...],
                      settings: StorageSettings) -> int:
    """Abort incomplete multipart uploads under ``prefix`` outside ``keep_prefixes``. Returns how many."""
    def run() -> int:
        n = 0
        result = client._list_multipart_uploads(bucket, prefix=prefix or None)
        for up in result.uploads:
            name = up.object_name
            if keep_prefixes and name.startswith(keep_prefixes):
                continue
            client._abort_multipart_upload(bucket, name, up.upload_id)
            n += 1
        return n

    return _retry(f"abort incomplete uploads s3://{bucket}/{prefix}", run, settings)


def _read_manifest(client, bucket: str, man_key: str, settings: StorageSettings, *,
                   missing_ok: bool = False) -> dict | None:
    if not _object_exists(client, bucket, man_key, settings):
        if missing_ok:
            return None
        raise StorageError(f"s3://{bucket}/{man_key} does not exist")
    raw = _get_bytes(client, bucket, man_key, settings)
    try:
        manifest = json.loads(raw)
        files = manifest["files"]
        if not isinstance(files, list) or not all(isinstance(f, dict) and isinstance(f.get("path"), str)
                                                  for f in files):
            raise TypeError("files must be a list of {path, size, sha256}")
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise StorageError(f"s3://{bucket}/{man_key}: malformed manifest ({exc})") from None
    return manifest


def download(uri: str | Path, local: str | Path, *, settings: StorageSettings | None = None,
             require_manifest: bool = True) -> Path:
    """Copy a file or folder from `uri` to `local` (atomically). Returns `local`.

    A folder is read only through its complete manifest (every file's size and sha256 checked); every path is
    confined to `local`. ``require_manifest=False`` also accepts a folder written by another tool (all objects
    under the prefix, paths still confined)."""
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
        _get_file(client, bucket, key, local, settings)
        return local
    man_key = _join(key, MANIFEST)
    manifest = _read_manifest(client, bucket, man_key, settings, missing_ok=True)
    entries: list[tuple[str, str, int | None, str | None]] = []  # (relative path, object key, size, sha256)
    if manifest is not None:
        vprefix = str(manifest.get("prefix") or "")
        for f in manifest["files"]:
            obj = _join(key, f"{vprefix}/{f['path']}" if vprefix else f["path"])
            entries.append((f["path"], obj, f.get("size"), f.get("sha256")))
    else:
        prefix = f"{key}/" if key else ""
        keys = _list_keys(client, bucket, prefix, settings)
        if not keys:
            raise StorageError(f"download: {uri} does not exist")
        if require_manifest:
            raise StorageError(f"download: {uri} has no {MANIFEST}: an incomplete upload, or not written by "
                               "fathom.storage (pass require_manifest=False to read it anyway)")
        log.warning("%s has no manifest: downloading every object under it", uri)
        entries = [(k[len(prefix):], k, None, None) for k in keys]
    local.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(local, suffix=".part") as tmp:
        tmp.mkdir()
        for rel, obj, size, digest in entries:
            dest = confined_path(tmp, rel)  # before anything is written
            _get_file(client, bucket, obj, dest, settings, size=size, sha256=digest)
    return local


def published_folders(uri: str | Path, *, settings: StorageSettings | None = None) -> list[str]:
    """Names of the complete child folders of `uri`: on S3 those whose manifest exists (a folder still being
    uploaded, or whose upload was killed, is not listed); locally the child directories (local uploads are
    atomic renames)."""
    if not is_s3(uri):
        root = _local(uri)
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    client, settings = _client(settings)
    bucket, key = split_s3(str(uri))
    base = f"{key}/" if key else ""
    names = set()
    for obj in _list_keys(client, bucket, base, settings):
        parts = obj[len(base):].split("/")
        if len(parts) == 2 and parts[1] == MANIFEST:
            names.add(parts[0])
    return sorted(names)


def remove(uri: str | Path, *, settings: StorageSettings | None = None) -> None:
    """Delete a file or folder. An S3 folder is unpublished first (its manifest deleted), then its objects, so a
    reader never sees a half-deleted folder as complete."""
    if not is_s3(uri):
        _remove(_local(uri))
        return
    client, settings = _client(settings)
    bucket, key = split_s3(str(uri))
    if not key:
        raise StorageError(f"remove: refusing to delete a whole bucket ({uri})")
    man_key = _join(key, MANIFEST)
    if _object_exists(client, bucket, man_key, settings):
        _retry(f"remove s3://{bucket}/{man_key}", lambda: client.remove_object(bucket, man_key), settings)
    for obj in [key] + _list_keys(client, bucket, f"{key}/", settings):
        _retry(f"remove s3://{bucket}/{obj}", lambda o=obj: client.remove_object(bucket, o), settings)


def read_bytes(uri: str | Path, *, settings: StorageSettings | None = None) -> bytes:
    if not is_s3(uri):
        return _local(uri).read_bytes()
    client, settings = _client(settings)
    bucket, key = split_s3(str(uri))
    return _get_bytes(client, bucket, key, settings)


def write_bytes(uri: str | Path, data: bytes, *, settings: StorageSettings | None = None) -> None:
    if not is_s3(uri):
        atomic_write_bytes(_local(uri), data)
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


def _get_file(client, bucket: str, key: str, dest: Path, settings: StorageSettings, *,
              size: int | None = None, sha256: str | None = None) -> None:
    """Stream one object to ``dest`` atomically, checking ``size`` and ``sha256`` when given; a failed or
    mismatching download leaves nothing behind."""
    def get() -> None:
        with atomic_path(dest, suffix=".part") as tmp:
            h = hashlib.sha256()
            n = 0
            resp = client.get_object(bucket, key)
            try:
                with open(tmp, "wb") as fh:
                    for chunk in resp.stream(1 << 20):
                        fh.write(chunk)
                        h.update(chunk)
                        n += len(chunk)
            finally:
                resp.close()
                resp.release_conn()
            if size is not None and n != size:
                raise IntegrityError(f"download s3://{bucket}/{key}: {n} bytes, the manifest says {size}")
            if sha256 is not None and h.hexdigest() != sha256:
                raise IntegrityError(f"download s3://{bucket}/{key}: sha256 {h.hexdigest()[:16]}… differs from the "
                                     f"manifest's {sha256[:16]}…")

    _retry(f"get s3://{bucket}/{key}", get, settings)


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
    with atomic_path(dest) as tmp:
        if src.is_dir():
            shutil.copytree(src, tmp)
        else:
            shutil.copy2(src, tmp)
