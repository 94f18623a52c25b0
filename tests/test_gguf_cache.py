"""The GGUF conversion cache: converted once, never half-written, safe under concurrent starts."""

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from bench.models import gguf_cache
from bench.models.errors import ModelUnavailable

CONVERTER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from bench.models import gguf_cache

    import numpy
    from safetensors.numpy import save_file

    def slow_fake_convert(gguf_path, destination):
        with open(sys.argv[1], "a") as log:  # one line per conversion actually performed
            log.write("converted\\n")
        time.sleep(1.0)  # wide window for the second process to arrive mid-conversion
        (destination / "config.json").write_text("{}")
        save_file({"weight": numpy.zeros(4)}, str(destination / "model.safetensors"))

    gguf_cache._convert = slow_fake_convert
    print(gguf_cache.converted_checkpoint("fake-model", lambda scratch: Path("unused.gguf")))
""")


def test_two_processes_convert_once(tmp_path):
    env = {"SPBENCH_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    log = tmp_path / "conversions.log"
    workers = [subprocess.Popen([sys.executable, "-c", CONVERTER, str(log)], env=env,
                                stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=60)[0].strip() for w in workers]
    assert all(w.returncode == 0 for w in workers)
    assert outputs[0] == outputs[1]
    assert log.read_text().count("converted") == 1
    models = tmp_path / "cache" / "models"
    assert sorted(p.name for p in models.iterdir() if not p.name.endswith(".lock")) == ["fake-model"]


def test_interrupted_conversion_leaves_no_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("SPBENCH_CACHE", str(tmp_path))

    def failing_convert(gguf_path, destination):
        (destination / "config.json").write_text("{}")
        raise KeyboardInterrupt  # killed halfway

    monkeypatch.setattr(gguf_cache, "_convert", failing_convert)
    try:
        gguf_cache.converted_checkpoint("half", lambda scratch: tmp_path / "x.gguf")
    except KeyboardInterrupt:
        pass
    assert not gguf_cache.is_converted("half")
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["half.lock"]


def test_a_conversion_killed_outright_leaves_nothing_behind_the_next_one(tmp_path, monkeypatch):
    """SIGKILL runs no cleanup: the next conversion, holding the lock, removes the dead one's staging folder."""
    monkeypatch.setenv("SPBENCH_CACHE", str(tmp_path))
    leftover = tmp_path / "models" / ".fake-model.staging-abc123"
    leftover.mkdir(parents=True)
    (leftover / "model.safetensors").write_bytes(b"half")

    def convert(gguf_path, destination):
        (destination / gguf_cache.COMPLETE_MARKER).write_text("ok")
        (destination / "model.safetensors").write_bytes(b"weights")
        os.chmod(destination / "model.safetensors", 0o600)  # as safetensors writes it

    monkeypatch.setattr(gguf_cache, "_convert", convert)
    converted = gguf_cache.converted_checkpoint("fake-model", lambda scratch: tmp_path / "x.gguf")
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["fake-model", "fake-model.lock"]
    # readable by the other users of a shared cache, as far as the umask allows
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(converted.stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((converted / "model.safetensors").stat().st_mode) == 0o666 & ~mask


def test_an_unwritable_cache_is_named(tmp_path, monkeypatch):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("SPBENCH_CACHE", str(blocker))
    with pytest.raises(ModelUnavailable, match=r"cannot write the model cache .*cache/models .*SPBENCH_CACHE"):
        gguf_cache.converted_checkpoint("fake-model", lambda scratch: tmp_path / "x.gguf")


def test_a_checkpoint_cut_short_after_conversion_is_converted_again(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import save_file

    monkeypatch.setenv("SPBENCH_CACHE", str(tmp_path))
    conversions = []

    def convert(gguf_path, destination):
        conversions.append(destination)
        save_file({"weight": torch.zeros(64, 64)}, destination / "model.safetensors")
        (destination / gguf_cache.COMPLETE_MARKER).write_text("ok")

    monkeypatch.setattr(gguf_cache, "_convert", convert)
    weights = gguf_cache.converted_checkpoint("fake-model", lambda scratch: tmp_path / "x.gguf") / "model.safetensors"
    assert gguf_cache.is_converted("fake-model")
    weights.write_bytes(weights.read_bytes()[:1000])  # a disk that filled, a copy cut short
    assert not gguf_cache.is_converted("fake-model")  # so `spbench models` does not call it ready
    gguf_cache.converted_checkpoint("fake-model", lambda scratch: tmp_path / "x.gguf")
    assert len(conversions) == 2 and gguf_cache.is_converted("fake-model")


def _fake_conversion(monkeypatch, tmp_path):
    from safetensors.numpy import save_file
    import numpy

    def convert(gguf_path, destination):
        save_file({"weight": numpy.zeros(64)}, str(destination / "model.safetensors"))
        (destination / "config.json").write_text('{"model_type": "llama"}')
        (destination / "tokenizer.json").write_text('{"version": "1.0"}')

    monkeypatch.setenv("SPBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(gguf_cache, "_convert", convert)
    return gguf_cache.converted_checkpoint("fake-model", lambda scratch: tmp_path / "x.gguf")


@pytest.mark.parametrize("damage", [
    lambda folder: (folder / "tokenizer.json").unlink(),
    lambda folder: (folder / "config.json").write_text("{"),  # cut short
    lambda folder: (folder / "model.safetensors").unlink(),  # no weights left to read a header of
    lambda folder: (folder / gguf_cache.COMPLETE_MARKER).write_text("converted from x.gguf\n"),  # an older marker
])
def test_a_converted_checkpoint_missing_or_cutting_short_any_file_it_wrote_is_not_ready(tmp_path, monkeypatch,
                                                                                        damage):
    folder = _fake_conversion(monkeypatch, tmp_path)
    assert gguf_cache.is_converted("fake-model")
    damage(folder)
    assert not gguf_cache.is_converted("fake-model")


def test_a_gguf_assembled_for_the_conversion_is_written_in_scratch_under_the_lock_and_not_kept(tmp_path,
                                                                                               monkeypatch):
    """Gemma 3's file is put together from four packages' parts: written in place, a process killed
    halfway left a file that failed its checksum on every later run."""
    monkeypatch.setenv("SPBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(gguf_cache, "_convert", lambda gguf, destination: (destination / "a").write_text("x"))
    seen = []

    def assemble(scratch):
        assert (tmp_path / "models" / "fake-model.lock").exists()
        seen.append(scratch / "model.gguf")
        seen[0].write_bytes(b"GGUF")
        return seen[0]

    gguf_cache.converted_checkpoint("fake-model", assemble)
    assert not seen[0].exists() and not seen[0].parent.exists()
    assert gguf_cache.converted_checkpoint("other", lambda scratch: None) is None  # not installed
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["fake-model", "fake-model.lock", "other.lock"]
