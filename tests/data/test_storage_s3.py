"""fathom.storage against a real S3-compatible server (moto) on loopback."""

from __future__ import annotations

import json

import pytest

from fathom import storage
from fathom.storage import MANIFEST, StorageError, StorageSettings


@pytest.fixture()
def s3(s3_env):
    return StorageSettings()


def test_storage_settings_from_env(s3):
    assert s3.host_and_tls()[1] is False
    assert "testing" not in repr(s3)  # keys are secrets, never printed


def test_storage_file_roundtrip(s3, tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("hello")
    storage.upload(src, "s3://bkt-file/x/a.txt")
    assert storage.exists("s3://bkt-file/x/a.txt")
    assert not storage.exists("s3://bkt-file/x/missing.txt")
    assert storage.read_text("s3://bkt-file/x/a.txt") == "hello"
    out = storage.download("s3://bkt-file/x/a.txt", tmp_path / "b" / "a.txt")
    assert out.read_text() == "hello"
    storage.write_text("s3://bkt-file/y.json", json.dumps({"k": 1}))
    assert json.loads(storage.read_text("s3://bkt-file/y.json")) == {"k": 1}


def test_storage_folder_roundtrip_with_manifest(s3, tmp_path):
    src = tmp_path / "ds"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub" / "b.bin").write_bytes(b"\x00" * 1000)
    storage.upload(src, "s3://bkt-dir/run1/ds")
    assert storage.exists("s3://bkt-dir/run1/ds")
    man = json.loads(storage.read_text(f"s3://bkt-dir/run1/ds/{MANIFEST}"))
    assert sorted(f["path"] for f in man["files"]) == ["a.txt", "sub/b.bin"]
    # re-upload with one file removed: the stale object is removed after the new manifest is written
    (src / "a.txt").unlink()
    storage.upload(src, "s3://bkt-dir/run1/ds")
    got = storage.download("s3://bkt-dir/run1/ds", tmp_path / "dl")
    assert sorted(p.relative_to(got).as_posix() for p in got.rglob("*") if p.is_file()) == ["sub/b.bin"]
    assert (got / "sub" / "b.bin").read_bytes() == b"\x00" * 1000


def test_storage_multipart_upload(s3, tmp_path, monkeypatch):
    monkeypatch.setenv("FATHOM_S3_PART_SIZE", str(5 * 1024 * 1024))
    big = tmp_path / "big.bin"
    big.write_bytes(b"ab" * (3 * 1024 * 1024 + 7))  # > one 5 MiB part -> multipart
    storage.upload(big, "s3://bkt-big/big.bin")
    assert storage.download("s3://bkt-big/big.bin", tmp_path / "big2.bin").read_bytes() == big.read_bytes()


def test_storage_failed_upload_leaves_no_object(s3, tmp_path, monkeypatch):
    """A failing upload (the source dies mid-stream) must not create the target object."""
    from minio import Minio

    src = tmp_path / "f.bin"
    src.write_bytes(b"x" * (12 * 1024 * 1024))
    real_put = Minio._upload_part
    calls = {"n": 0}

    def flaky_upload_part(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] >= 2:
            raise ValueError("disk read error in the middle of the upload")
        return real_put(self, *a, **kw)

    monkeypatch.setattr(Minio, "_upload_part", flaky_upload_part)
    monkeypatch.setenv("FATHOM_S3_PART_SIZE", str(5 * 1024 * 1024))
    with pytest.raises(StorageError):
        storage.upload(src, "s3://bkt-fail/f.bin")
    monkeypatch.setattr(Minio, "_upload_part", real_put)
    assert not storage.exists("s3://bkt-fail/f.bin")


def test_storage_retries_transient_errors(s3, tmp_path, monkeypatch):
    from minio import Minio
    import urllib3

    real = Minio.put_object
    calls = {"n": 0}

    def flaky(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise urllib3.exceptions.ProtocolError("connection reset")
        return real(self, *a, **kw)

    monkeypatch.setattr(Minio, "put_object", flaky)
    storage.write_text("s3://bkt-retry/k.txt", "ok")
    assert calls["n"] == 2
    assert storage.read_text("s3://bkt-retry/k.txt") == "ok"


def test_storage_missing_and_config_errors(s3, tmp_path, monkeypatch):
    with pytest.raises(StorageError):
        storage.download("s3://bkt-none/nothing", tmp_path / "x")
    monkeypatch.delenv("FATHOM_S3_ENDPOINT")
    from fathom.errors import ConfigError

    with pytest.raises(ConfigError, match="FATHOM_S3_ENDPOINT"):
        storage.exists("s3://b/k")


def test_storage_local_paths_atomic(tmp_path):
    src = tmp_path / "folder"
    src.mkdir()
    (src / "f.txt").write_text("1")
    storage.upload(src, tmp_path / "copy")
    (src / "f.txt").write_text("2")
    storage.upload(src, str(tmp_path / "copy"))  # replaces the folder
    assert (tmp_path / "copy" / "f.txt").read_text() == "2"
    assert storage.exists(tmp_path / "copy")
    storage.write_text(str(tmp_path / "t" / "a.txt"), "z")
    assert storage.read_text(str(tmp_path / "t" / "a.txt")) == "z"
    assert not list(tmp_path.glob("**/*.tmp"))


# ---------------------------------------------------------------------------------------------------------------
# Hardening: confinement, atomic publication, integrity (issue 9)

def _put_raw(bucket: str, key: str, data: bytes) -> None:
    from fathom.storage import _client, _ensure_bucket, _put_bytes

    client, settings = _client(None)
    _ensure_bucket(client, bucket, settings)
    _put_bytes(client, bucket, key, data, settings)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name or ".tmp" in p.name or ".old" in p.name)


@pytest.mark.parametrize("evil", ["/tmp/fathom-evil-{u}.txt", "../outside-{u}.txt", "a/../../outside-{u}.txt",
                                  "..", "", "C:/x-{u}"])
def test_storage_download_refuses_paths_outside_the_target(s3, tmp_path, evil):
    import uuid

    from fathom.storage import UnsafePathError

    rel = evil.format(u=uuid.uuid4().hex[:8])
    _put_raw("bkt-evil", "ds/_v/1/x", b"pwned")
    manifest = {"version": 2, "prefix": "_v/1", "files": [{"path": rel, "size": 5}]}
    _put_raw("bkt-evil", f"ds/{MANIFEST}", json.dumps(manifest).encode())
    target = tmp_path / "dl" / "ds"
    with pytest.raises(UnsafePathError):
        storage.download("s3://bkt-evil/ds", target)
    assert not target.exists() and _leftovers(tmp_path / "dl") == []
    assert not (tmp_path / "dl" / "outside.txt").exists()
    if rel.startswith("/"):
        from pathlib import Path

        assert not Path(rel).exists()


def test_storage_unmanifested_listing_is_confined_and_opt_in(s3, tmp_path):
    _put_raw("bkt-nomani", "ds/a.txt", b"A")
    with pytest.raises(StorageError, match="no _FATHOM_MANIFEST"):  # a half upload never looks complete
        storage.download("s3://bkt-nomani/ds", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    got = storage.download("s3://bkt-nomani/ds", tmp_path / "y", require_manifest=False)
    assert (got / "a.txt").read_bytes() == b"A"
    assert not storage.exists("s3://bkt-nomani/ds")


def test_storage_sha256_verified_and_no_part_leftovers(s3, tmp_path):
    from fathom.storage import IntegrityError

    src = tmp_path / "src"
    src.mkdir()
    (src / "w.bin").write_bytes(b"weights")
    storage.upload(src, "s3://bkt-sha/m")
    man = json.loads(storage.read_text(f"s3://bkt-sha/m/{MANIFEST}"))
    assert man["version"] == 2 and man["prefix"].startswith("_v/")
    _put_raw("bkt-sha", f"m/{man['prefix']}/w.bin", b"WEIGHTS")  # same size, different bytes
    dl = tmp_path / "dl"
    dl.mkdir()
    with pytest.raises(IntegrityError, match="sha256"):
        storage.download("s3://bkt-sha/m", dl / "m")
    assert list(dl.iterdir()) == []  # no m, no m.part, no temporary file


def test_storage_interrupted_reupload_keeps_the_published_version(s3, tmp_path, monkeypatch):
    from minio import Minio

    src = tmp_path / "ckpt"
    src.mkdir()
    for i in range(4):
        (src / f"shard{i}.bin").write_bytes(bytes([i]) * 100)
    storage.upload(src, "s3://bkt-reup/ckpt")
    for i in range(4):
        (src / f"shard{i}.bin").write_bytes(bytes([9]) * 120)
    real = Minio.fput_object
    calls = {"n": 0}

    def dies_midway(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise ValueError("killed in the middle of the re-upload")
        return real(self, *a, **kw)

    monkeypatch.setattr(Minio, "fput_object", dies_midway)
    with pytest.raises(StorageError):
        storage.upload(src, "s3://bkt-reup/ckpt")
    monkeypatch.setattr(Minio, "fput_object", real)
    got = storage.download("s3://bkt-reup/ckpt", tmp_path / "dl")
    assert {p.name: p.read_bytes() for p in got.iterdir()} == {f"shard{i}.bin": bytes([i]) * 100 for i in range(4)}
    storage.upload(src, "s3://bkt-reup/ckpt")  # a complete re-upload publishes the new version
    got = storage.download("s3://bkt-reup/ckpt", tmp_path / "dl2")
    assert all(p.read_bytes() == bytes([9]) * 120 for p in got.iterdir())
    # old versions beyond the previous one are collected
    storage.upload(src, "s3://bkt-reup/ckpt")
    from fathom.storage import _client, _list_keys

    client, settings = _client(None)
    versions = {k.split("/")[2] for k in _list_keys(client, "bkt-reup", "ckpt/_v/", settings)}
    assert len(versions) == 2


def test_storage_failed_multipart_leaves_no_incomplete_upload(s3, tmp_path, monkeypatch):
    from minio import Minio

    from fathom.storage import _client

    src = tmp_path / "big"
    src.mkdir()
    (src / "f.bin").write_bytes(b"x" * (11 * 1024 * 1024))
    real_put = Minio._upload_part
    calls = {"n": 0}

    def flaky(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] >= 2:
            raise ValueError("disk read error")
        return real_put(self, *a, **kw)

    monkeypatch.setattr(Minio, "_upload_part", flaky)
    monkeypatch.setenv("FATHOM_S3_PART_SIZE", str(5 * 1024 * 1024))
    with pytest.raises(StorageError):
        storage.upload(src, "s3://bkt-mp/ds")
    monkeypatch.setattr(Minio, "_upload_part", real_put)
    client, _ = _client(None)
    assert list(client._list_multipart_uploads("bkt-mp", prefix="ds/").uploads) == []
    assert not storage.exists("s3://bkt-mp/ds")


def test_storage_orphaned_multipart_upload_is_aborted_on_next_publish(s3, tmp_path):
    from fathom.storage import _client

    client, _ = _client(None)
    _put_raw("bkt-orphan", "warm", b"")
    client._create_multipart_upload("bkt-orphan", "ds/_v/old-killed/f.bin", {})  # a killed upload's leftover
    src = tmp_path / "ds"
    src.mkdir()
    (src / "a.txt").write_text("A")
    storage.upload(src, "s3://bkt-orphan/ds")
    assert list(client._list_multipart_uploads("bkt-orphan", prefix="ds/").uploads) == []


def test_atomic_write_helpers_leave_nothing_on_failure(tmp_path):
    from fathom.storage import atomic_path, atomic_write_json, atomic_write_text

    atomic_write_text(tmp_path / "a.txt", "one")
    atomic_write_json(tmp_path / "b.json", {"k": 1})
    assert (tmp_path / "a.txt").read_text() == "one" and json.loads((tmp_path / "b.json").read_text()) == {"k": 1}
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "a.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "dir") as tmp:
            tmp.mkdir()
            (tmp / "x").write_text("x")
            raise RuntimeError("crash")
    assert (tmp_path / "a.txt").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json"]
    with atomic_path(tmp_path / "dir") as tmp:  # folders are swapped in whole
        tmp.mkdir()
        (tmp / "x").write_text("v1")
    with atomic_path(tmp_path / "dir") as tmp:
        tmp.mkdir()
        (tmp / "y").write_text("v2")
    assert [p.name for p in (tmp_path / "dir").iterdir()] == ["y"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json", "dir"]


_STS_RESPONSE = """<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIATEMP</AccessKeyId>
<SecretAccessKey>temp-secret</SecretAccessKey><SessionToken>temp-token</SessionToken>
<Expiration>2099-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"""


@pytest.fixture()
def sts_server():
    """A minimal STS on loopback: records the AssumeRoleWithWebIdentity calls, answers with temporary keys."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit

    calls = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            calls.append({**parse_qs(urlsplit(self.path).query), **parse_qs(body)})
            data = _STS_RESPONSE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", calls
    server.shutdown()


def test_storage_web_identity_irsa(s3_server, sts_server, monkeypatch, tmp_path):
    """EKS IRSA: no static keys, a projected token file and a role ARN → STS AssumeRoleWithWebIdentity (a fake STS
    on loopback) → temporary credentials used for the object store (moto)."""
    sts_url, calls = sts_server
    for key in ("FATHOM_S3_ACCESS_KEY", "FATHOM_S3_SECRET_KEY"):
        monkeypatch.delenv(key, raising=False)
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZmF0aG9tOnJ1bm5lciJ9.c2ln")
    monkeypatch.setenv("FATHOM_S3_ENDPOINT", s3_server)
    monkeypatch.setenv("FATHOM_S3_REGION", "us-east-1")
    monkeypatch.setenv("FATHOM_S3_RETRIES", "1")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/fathom-pipelines")
    monkeypatch.setenv("FATHOM_S3_STS_ENDPOINT", sts_url)
    settings = StorageSettings()
    assert settings.access_key is None and settings.role_arn.endswith("fathom-pipelines")
    provider = storage.web_identity_provider(settings)
    creds = provider.retrieve()
    assert (creds.access_key, creds.session_token) == ("ASIATEMP", "temp-token")  # temporary credentials from STS
    assert calls[-1]["Action"] == ["AssumeRoleWithWebIdentity"] and calls[-1]["WebIdentityToken"] == [
        token.read_text()] and calls[-1]["RoleArn"] == ["arn:aws:iam::123456789012:role/fathom-pipelines"]
    src = tmp_path / "a.txt"
    src.write_text("irsa")
    storage.upload(src, "s3://irsa-bucket/a.txt")
    assert storage.read_text("s3://irsa-bucket/a.txt") == "irsa"

    monkeypatch.delenv("AWS_ROLE_ARN")
    with pytest.raises(Exception, match="AWS_ROLE_ARN"):
        storage.make_s3_client(StorageSettings())
