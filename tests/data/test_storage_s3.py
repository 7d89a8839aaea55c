"""fathom.storage against a real S3-compatible server (moto) on loopback."""

from __future__ import annotations

import json

import pytest

from fathom import storage
from fathom.storage import MANIFEST, StorageError, StorageSettings


@pytest.fixture(scope="session")
def s3_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def s3(s3_server, monkeypatch):
    monkeypatch.setenv("FATHOM_S3_ENDPOINT", s3_server)
    monkeypatch.setenv("FATHOM_S3_ACCESS_KEY", "testing")
    monkeypatch.setenv("FATHOM_S3_SECRET_KEY", "testing")
    monkeypatch.setenv("FATHOM_S3_REGION", "us-east-1")
    monkeypatch.setenv("FATHOM_S3_RETRIES", "1")
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
