"""download_dataset against a local HTTP server (127.0.0.1 only, never the internet)."""

from __future__ import annotations

import io
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.archive_server import Server, serve
from tune_digits.download import SOURCES, count_wavs, download_dataset
from tune_digits.errors import DataError

ROOT = SOURCES["fsdd"].archive_root
N_WAVS = 12


def _wav_bytes(seed: int) -> bytes:
    audio = np.random.default_rng(seed).uniform(-0.5, 0.5, 800).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, audio, 8000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _make_zip() -> bytes:
    """An FSDD-like archive: 12 recordings plus files that must not be extracted."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{ROOT}/", "")
        archive.writestr(f"{ROOT}/README.md", "# fsdd\n")
        archive.writestr(f"{ROOT}/utils/spectrogram.py", "print('hi')\n")
        archive.writestr(f"{ROOT}/acquire_data/extra.wav", _wav_bytes(99))  # outside recordings/
        archive.writestr(f"{ROOT}/recordings/../../evil.wav", _wav_bytes(98))  # must never escape
        for i in range(N_WAVS):
            archive.writestr(f"{ROOT}/recordings/{i % 10}_name_{i}.wav", _wav_bytes(i))
    return buffer.getvalue()


@pytest.fixture()
def server() -> Iterator[Server]:
    with serve(_make_zip(), "fsdd.zip") as state:
        yield state


def _download(to: Path, server: Server, expected: int = N_WAVS) -> Path:
    return download_dataset("fsdd", to, url=server.url, expected_files=expected, progress=False)


def _check_result(to: Path, result: Path) -> None:
    assert result == to / "fsdd"
    names = sorted(path.name for path in (result / "recordings").iterdir())
    assert names == sorted(f"{i % 10}_name_{i}.wav" for i in range(N_WAVS))
    assert sorted(path.name for path in result.iterdir()) == ["recordings"]
    assert sf.info(result / "recordings" / "3_name_3.wav").samplerate == 8000
    assert not (to / ".download").exists()  # archive removed once extracted
    assert not (to / "evil.wav").exists() and not (to.parent / "evil.wav").exists()
    assert [p.name for p in to.iterdir()] == ["fsdd"]  # no staging folder left


def test_download_extracts_only_recordings(tmp_path: Path, server: Server) -> None:
    result = _download(tmp_path, server)
    _check_result(tmp_path, result)
    assert server.ranges == [None]
    assert count_wavs(result) == N_WAVS


def test_existing_target_is_not_downloaded_again(tmp_path: Path, server: Server) -> None:
    _download(tmp_path, server)
    server.mode = "404"
    assert _download(tmp_path, server) == tmp_path / "fsdd"
    assert len(server.ranges) == 1


def test_resume_sends_range_header(tmp_path: Path, server: Server) -> None:
    half = len(server.body) // 2
    part = tmp_path / ".download" / "fsdd.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(server.body[:half])
    result = _download(tmp_path, server)
    assert server.ranges == [f"bytes={half}-"]
    _check_result(tmp_path, result)


def test_server_ignoring_range_restarts_from_zero(tmp_path: Path, server: Server) -> None:
    server.mode = "full"
    part = tmp_path / ".download" / "fsdd.zip.part"
    part.parent.mkdir(parents=True)
    stale = b"stale bytes that are not the archive"
    part.write_bytes(stale)
    result = _download(tmp_path, server)
    assert server.ranges == [f"bytes={len(stale)}-"]
    _check_result(tmp_path, result)


def test_broken_connection_then_resume(tmp_path: Path, server: Server) -> None:
    server.mode = "truncate"
    with pytest.raises(DataError, match="run again to resume") as info:
        _download(tmp_path, server)
    assert "\n" not in str(info.value)
    part = tmp_path / ".download" / "fsdd.zip.part"
    assert part.stat().st_size == len(server.body) // 2
    assert not (tmp_path / "fsdd").exists()
    server.mode = "range"
    _check_result(tmp_path, _download(tmp_path, server))
    assert server.ranges == [None, f"bytes={len(server.body) // 2}-"]


def test_wrong_count_raises_and_leaves_nothing(tmp_path: Path, server: Server) -> None:
    with pytest.raises(DataError, match=f"expected 13 recordings, found {N_WAVS} in ") as info:
        _download(tmp_path, server, expected=13)
    assert "delete" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "fsdd").exists()
    assert [p.name for p in tmp_path.iterdir()] == [".download"]  # only the archive stays


def test_existing_folder_with_wrong_count_raises(tmp_path: Path, server: Server) -> None:
    (tmp_path / "fsdd" / "recordings").mkdir(parents=True)
    with pytest.raises(DataError, match="holds 0 recordings instead of 12"):
        _download(tmp_path, server)
    assert server.ranges == []


def test_unknown_dataset_lists_known_names(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset 'mnist': choose one of audiomnist, fsdd"):
        download_dataset("mnist", tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_http_404_is_one_line_data_error(tmp_path: Path, server: Server) -> None:
    server.mode = "404"
    with pytest.raises(DataError, match="download of fsdd failed: HTTP 404") as info:
        _download(tmp_path, server)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "fsdd").exists()


def test_refused_connection_is_data_error(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a free port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/fsdd.zip"
    with pytest.raises(DataError, match="check the network and run again to resume") as info:
        download_dataset("fsdd", tmp_path, url=url, expected_files=N_WAVS, progress=False)
    assert "\n" not in str(info.value)


def test_corrupt_archive_is_data_error(tmp_path: Path, server: Server) -> None:
    server.body = b"this is not a zip file at all"
    with pytest.raises(DataError, match="not a valid zip archive"):
        _download(tmp_path, server)


def test_sources_describe_both_datasets() -> None:
    assert SOURCES["audiomnist"].expected_files == 30000
    assert SOURCES["audiomnist"].archive_root == "AudioMNIST-master"
    assert SOURCES["fsdd"].expected_files == 3000
    assert all(source.url.startswith("https://github.com/") for source in SOURCES.values())
