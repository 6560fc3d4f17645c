"""``data verify`` and the checksum check of ``data download audiomnist`` (fake corpus and server, six real files)."""

from __future__ import annotations

import gzip
import hashlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.archive_server import Server, serve
from tune_digits.cli import app
from tune_digits.download import download_dataset
from tune_digits.errors import DataError
from tune_digits.verify import load_manifest, verify_tree

NAMES = [f"{s:02d}/{d}_{s:02d}_0.wav" for s in (1, 2) for d in range(3)]
runner = CliRunner()


def _content(name: str) -> bytes:
    return f"RIFF fake recording {name}".encode() * 3


def _tsv(path: Path, names: list[str]) -> Path:
    lines = ["path\tsha256\tbytes"]
    for name in names:
        body = _content(name)
        lines.append(f"AudioMNIST/{name}\t{hashlib.sha256(body).hexdigest()}\t{len(body)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _corpus(root: Path) -> Path:
    for name in NAMES:
        (root / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "data" / name).write_bytes(_content(name))
    (root / "data" / "audioMNIST_meta.txt").write_text("{}")
    return root


def _verify(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["data", "verify", *args])
    return result.exit_code, result.output


def test_verify_clean_and_damaged_copy(tmp_path: Path) -> None:
    tsv = _tsv(tmp_path / "sums.tsv", NAMES)
    root = _corpus(tmp_path / "am")
    code, output = _verify(str(root), "--checksums", str(tsv))
    assert code == 0 and "6 of 6 recordings match" in output
    (root / "data" / NAMES[0]).unlink()  # missing
    (root / "data" / "02" / "9_02_0.wav").write_bytes(b"x")  # extra
    (root / "data" / NAMES[1]).write_bytes(_content(NAMES[1])[:-1])  # changed size
    body = bytearray(_content(NAMES[2]))
    body[0] ^= 1
    (root / "data" / NAMES[2]).write_bytes(bytes(body))  # same size, other bytes
    code, output = _verify(str(root / "data"), "--checksums", str(tsv))
    assert code == 1
    line = output.strip()
    assert "\n" not in line
    assert line.startswith("3 of 6 recordings match, 2 changed (first: 01/1_01_0.wav, 98 bytes instead of 99)")
    assert "1 extra (first: 02/9_02_0.wav)" in line and "1 missing (first: 01/0_01_0.wav)" in line
    report = verify_tree(root / "data", load_manifest(tsv))
    assert report.changed[1] == ("01/2_01_0.wav", "sha256 differs")
    code, output = _verify(str(root), "--checksums", str(tsv), "--subset")
    assert code == 1  # --subset forgives missing files only


def test_verify_subset_and_bad_input(tmp_path: Path) -> None:
    tsv = _tsv(tmp_path / "sums.tsv", NAMES)
    root = _corpus(tmp_path / "am")
    (root / "data" / NAMES[0]).unlink()
    assert _verify(str(root), "--checksums", str(tsv))[0] == 1
    code, output = _verify(str(root), "--checksums", str(tsv), "--subset")
    assert code == 0 and "5 of 6 recordings match, 1 missing (not checked: --subset)" in output
    code, output = _verify(str(tmp_path / "nowhere"))
    assert code == 2 and "error: data folder" in output


def test_shipped_checksums_match_the_shared_list_and_the_six_real_files(shared_data: Path) -> None:
    shipped = load_manifest()
    assert len(shipped) == 30000
    listed = shared_data / "audiomnist_sample" / "audiomnist_sha256.tsv"
    assert shipped == load_manifest(listed)
    code, output = _verify(str(shared_data / "audiomnist_sample" / "data"), "--subset")
    assert code == 0 and "6 of 30000 recordings match, 29994 missing" in output
    assert _verify(str(shared_data / "audiomnist_sample"))[0] == 1  # the full corpus is not there


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, body in files.items():
            archive.writestr(f"AudioMNIST-master/data/{name}", body)
    return buffer.getvalue()


@pytest.fixture()
def server() -> Iterator[Server]:
    with serve(b"", "am.zip") as state:
        yield state


def test_download_refuses_a_corrupted_recording(tmp_path: Path, server: Server) -> None:
    tsv = _tsv(tmp_path / "sums.tsv", NAMES)
    files = {name: _content(name) for name in NAMES}
    files[NAMES[3]] = b"corrupted"
    server.body = _zip(files)
    to = tmp_path / "datasets"
    with pytest.raises(DataError, match=r"1 files in .* do not match .*first: 02/0_02_0.wav \(9 bytes") as info:
        download_dataset("audiomnist", to, url=server.url, expected_files=6, progress=False, checksums=tsv)
    assert "\n" not in str(info.value)
    assert [p.name for p in to.iterdir()] == [".download"]  # nothing moved into place, no staging left
    files[NAMES[3]] = _content(NAMES[3])
    server.body = _zip(files)
    (to / ".download" / "audiomnist.zip").unlink()
    target = download_dataset("audiomnist", to, url=server.url, expected_files=6, progress=False, checksums=tsv)
    assert verify_tree(target / "data", load_manifest(tsv)).ok


def test_download_checks_real_files_with_the_shipped_list(tmp_path: Path, server: Server, shared_data: Path) -> None:
    data = shared_data / "audiomnist_sample" / "data"
    files = {p.relative_to(data).as_posix(): p.read_bytes() for p in sorted(data.rglob("*.wav"))}
    server.body = _zip(files)
    target = download_dataset("audiomnist", tmp_path, url=server.url, expected_files=6, progress=False)
    assert sorted(p.name for p in (target / "data").iterdir()) == ["01", "02", "08", "42", "51", "56"]
    first = next(iter(files))
    files[first] = files[first][:-2] + b"\0\1"
    server.body = _zip(files)
    with pytest.raises(DataError, match=f"first: {first} \\(sha256 differs\\)"):
        download_dataset("audiomnist", tmp_path / "again", url=server.url, expected_files=6, progress=False)
    assert not (tmp_path / "again" / "audiomnist").exists()
    assert gzip.decompress((Path(__file__).parents[1] / "tune_digits/corpora/audiomnist_sha256.tsv.gz").read_bytes())


def test_fullsize_generator_writes_the_real_clip_lengths(shared_data: Path, tmp_path: Path) -> None:
    from tests.test_benchmarks import _load_script

    gen = _load_script("make_fullsize_corpus")
    real = load_manifest()
    gen.build(shared_data / "fsdd" / "recordings", tmp_path / "am", speakers=2, per_speaker=20, processes=1)
    written = sorted((tmp_path / "am" / "data").rglob("*.wav"))
    assert len(written) == 40
    for path in written:
        name = path.relative_to(tmp_path / "am" / "data").as_posix()
        assert path.stat().st_size == real[name].size, name  # the real recording's size, header included
    lengths = gen.real_lengths()
    assert min(lengths.values()) / 48000 == pytest.approx(0.293, abs=1e-3)
    assert max(lengths.values()) / 48000 == pytest.approx(1.0, abs=1e-3)
    assert sum(lengths.values()) / len(lengths) / 48000 == pytest.approx(0.643, abs=1e-3)
    beyond = gen.clip_length(lengths, sorted(lengths.values()), 0, 61, 3, 7)
    assert beyond in set(lengths.values())
