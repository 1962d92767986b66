"""Untrusted files never run code: checkpoints load with weights_only=True (a crafted pickle is
refused and its payload never runs), the compiled-kernel cache loads only a library whose bytes
match the checksum recorded at build time, in a folder and file nobody else can write, and names
that become paths cannot leave their directory."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from graphrec import native
from graphrec.errors import DataError, MissingFileError, UnsafeFileError, UnsafeNameError
from graphrec.train import checkpoint
from graphrec.utils import MAX_NAME_LEN, safe_name

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- checkpoints -------------------------------------------------------------------------------

class _SystemCall:
    """Unpickling this runs ``touch MARKER`` in a shell."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class _OpenFile:
    """Unpickling this creates MARKER (no shell)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _write_malicious(path, marker, kind):
    payload = {"components": {"": {"w": torch.zeros(2)}},
               "trainer": {"epoch": (_SystemCall if kind != "raw-pickle" else _OpenFile)(marker)}}
    if kind == "zip":
        torch.save(payload, path)
    elif kind == "legacy-torch":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)


@pytest.mark.parametrize("kind", ["zip", "legacy-torch", "raw-pickle"])
def test_malicious_checkpoint_is_refused_and_its_payload_never_runs(tmp_path, kind):
    marker, path = tmp_path / "pwned", tmp_path / "best.pt"
    _write_malicious(path, marker, kind)
    with pytest.raises(UnsafeFileError) as err:
        checkpoint.load_file(str(path))
    msg = str(err.value)
    assert str(path) in msg and "\n" not in msg and "graphrec checkpoint convert" in msg
    # converting without --trust reads only numpy values: the payload is refused again
    with pytest.raises(UnsafeFileError, match="--trust"):
        checkpoint.convert(str(path), str(tmp_path / "converted.pt"))
    assert not marker.exists() and not (tmp_path / "converted.pt").exists()
    # control: the file really is malicious (a full unpickle runs the payload)
    if kind == "raw-pickle":
        with open(path, "rb") as f:
            pickle.load(f)
    else:
        torch.load(path, weights_only=False)
    assert marker.exists()


def test_checkpoints_the_trainer_writes_load_with_weights_only(tmp_path):
    """Whatever `Trainer._state()` stores (fused-Adam and auxiliary optimiser states, the LambdaLR
    scheduler, generator and RNG states, history, best scores) loads with weights_only=True."""
    from graphrec.experiment import run

    ov = {"data": {"dataset_args": {"n_users": 60, "n_items": 40, "n_interactions": 900, "seed": 3}},
          "train": {"batch_size": 256, "progress": False, "epochs": 1}}
    run(model="sand-a", dataset="synthetic", overrides=ov, seed=1, out=str(tmp_path / "r"), quiet=True)
    for name in ("best.pt", "last.pt"):  # raises UnpicklingError on anything else
        torch.load(tmp_path / "r" / name, map_location="cpu", weights_only=True)
    state = checkpoint.load_file(str(tmp_path / "r" / "last.pt"))["trainer"]
    assert state["aux_optimizer"] is not None and isinstance(state["generator"], torch.Tensor)


def test_save_stores_numpy_values_as_plain_ones_and_refuses_objects(tmp_path):
    model = torch.nn.Linear(3, 2)
    path = str(tmp_path / "c.pt")
    checkpoint.save(path, model, valid={"recall@20": np.float64(0.25), "n": np.int64(3)},
                    counts=np.arange(4), flag=np.bool_(True))
    ck = checkpoint.load_file(path)
    assert type(ck["valid"]["recall@20"]) is float and ck["valid"]["recall@20"] == 0.25
    assert type(ck["valid"]["n"]) is int and ck["flag"] is True
    assert torch.equal(ck["counts"], torch.arange(4))
    with pytest.raises(TypeError, match=r"\['extra'\]\['when'\]"):
        checkpoint.save(path, model, extra={"when": object()})


def test_old_numpy_checkpoint_is_refused_then_converted_without_running_code(tmp_path):
    """Decision: checkpoints of older graphrec versions that hold only tensors and plain values
    load as before; one holding numpy values is refused with the command that converts it, and
    that command reads numpy values without unpickling anything else."""
    path = tmp_path / "best.pt"
    model = torch.nn.Linear(3, 2)
    torch.save({"components": checkpoint.components(model), "epoch": np.int64(7),
                "valid": {"recall@20": np.float64(0.5)}, "seen": np.arange(3)}, path)
    with pytest.raises(UnsafeFileError, match="numpy") as err:
        checkpoint.load_file(str(path))
    assert f"graphrec checkpoint convert {path}" in str(err.value)
    proc = subprocess.run([sys.executable, "-m", "graphrec", "checkpoint", "convert", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    ck = checkpoint.load_file(str(path))
    assert ck["epoch"] == 7 and type(ck["epoch"]) is int and ck["valid"] == {"recall@20": 0.5}
    assert torch.equal(ck["seen"], torch.arange(3))
    assert (tmp_path / "best.pt.orig").exists()
    fresh = torch.nn.Linear(3, 2)
    checkpoint.load_into(fresh, ck)
    assert torch.equal(fresh.weight, model.weight)


def test_unreadable_checkpoints_get_one_line_naming_the_file(tmp_path):
    with pytest.raises(MissingFileError, match="nope.pt"):
        checkpoint.load_file(str(tmp_path / "nope.pt"))
    with pytest.raises(DataError, match="is a directory"):
        checkpoint.load_file(str(tmp_path))
    good = tmp_path / "good.pt"
    checkpoint.save(str(good), torch.nn.Linear(30, 20))
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:200])
    foreign = tmp_path / "foreign.pt"
    torch.save({"state": 1}, foreign)
    for p in (cut, foreign):
        with pytest.raises(DataError) as err:
            checkpoint.load_file(str(p))
        assert str(p) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DataError, match=r"good\.pt does not fit model Linear"):
        checkpoint.load_into(torch.nn.Linear(3, 2), checkpoint.load_file(str(good)), where=str(good))


def test_checkpoint_names_stay_inside_the_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "sub").mkdir(parents=True)
    for p in (run_dir / "best.pt", run_dir / "sub" / "e3.pt", tmp_path / "outside.pt"):
        p.write_bytes(b"x")
    os.symlink(tmp_path / "outside.pt", run_dir / "link.pt")
    assert checkpoint.resolve_in_run(str(run_dir), "best.pt") == str(run_dir / "best.pt")
    assert checkpoint.resolve_in_run(str(run_dir), "sub/../sub/e3.pt").endswith("e3.pt")
    for name in ("../outside.pt", "sub/../../outside.pt", "link.pt"):
        with pytest.raises(UnsafeFileError, match="inside the run directory"):
            checkpoint.resolve_in_run(str(run_dir), name)
    # an absolute path is taken as given, on purpose
    assert checkpoint.resolve_in_run(str(run_dir), str(tmp_path / "outside.pt")) == str(tmp_path / "outside.pt")
    with pytest.raises(MissingFileError, match="best.pt"):  # names what the run has
        checkpoint.resolve_in_run(str(run_dir), "last.pt")


# -- names that become paths -------------------------------------------------------------------

@pytest.mark.parametrize("name, why", [
    ("", "empty"), ("a/b", "separator"), ("..", "'..'"), ("a..b", "'..'"), ("../../etc", "separator"),
    ("a\\b", "separator"), (".hidden", "starts with '.'"), ("-rf", "starts with '-'"),
    ("a\x00b", "U+0000"), ("a\nb", "U+000A"), ("a\x1bb", "U+001B"), ("a\u202eb", "U+202E"),
    (" x", "whitespace"), ("x" * (MAX_NAME_LEN + 1), "characters long"), (7, "expected a string"),
])
def test_safe_name_refuses_names_that_could_escape(name, why):
    with pytest.raises(UnsafeNameError) as err:
        safe_name(name, "run name")
    msg = str(err.value)
    assert msg.startswith("run name ") and why in msg and "\n" not in msg and "\x00" not in msg
    assert isinstance(err.value, ValueError)  # callers catching ValueError keep working


@pytest.mark.parametrize("name", ["lightgcn", "freedom+sand", "sand-a", "ml-100k", "run_1.2", "café",
                                  "x" * MAX_NAME_LEN, "a b"])
def test_safe_name_keeps_plain_names(name):
    assert safe_name(name, "model name") == name


# -- the compiled-kernel cache -----------------------------------------------------------------

needs_cc = pytest.mark.skipif(native.compiler() is None, reason="no C compiler here")

_PROBE = textwrap.dedent("""
    import json, sys, torch
    from graphrec import native
    from graphrec.graphs import native_spmm
    from graphrec.graphs.sparse import _mm
    g = torch.Generator().manual_seed(0)
    dense = (torch.rand(40, 30, generator=g) < 0.3).float() * torch.randn(40, 30, generator=g)
    x = torch.randn(30, 8, generator=g)
    torch.save({"out": _mm(dense.to_sparse_csr(), x), "oracle": dense.double() @ x.double()}, sys.argv[1])
    maps = [line.split() for line in open("/proc/self/maps")]
    print(json.dumps({"backend": native_spmm.backend(), "why": native.why_not("csr_spmm"),
                      "inodes": sorted({int(f[4]) for f in maps if len(f) >= 5})}))
""")

_PLANTED_C = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
    const char *p = getenv("GRAPHREC_TEST_MARKER");
    if (p) { FILE *f = fopen(p, "w"); if (f) { fputs("planted code ran\n", f); fclose(f); } }
}
int graphrec_csr_spmm(void) { return 0; }
int graphrec_csr_transpose(void) { return 0; }
"""


def _probe(cache, tmp_path, tag):
    """Load csr_spmm in a fresh process (a bad library may kill it) with ``cache`` as cache root."""
    env = {**os.environ, "GRAPHREC_CACHE_DIR": str(cache), "GRAPHREC_NATIVE": "1", "GRAPHREC_LOG": "INFO",
           "GRAPHREC_TEST_MARKER": str(tmp_path / "planted-ran")}
    out = tmp_path / f"{tag}.pt"
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(out)], env=env, capture_output=True, text=True,
                          timeout=180, cwd=REPO)
    assert proc.returncode == 0, f"probe died with {proc.returncode}: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr, torch.load(out)


@pytest.fixture(scope="module")
def built_cache(tmp_path_factory):
    """A cache root holding a built, checksummed csr_spmm (built once for this module)."""
    if native.compiler() is None:
        pytest.skip("no C compiler here")
    root = tmp_path_factory.mktemp("golden")
    info, _, result = _probe(root / "cache", root, "golden")
    assert info["backend"] == "graphrec-native", info
    return root / "cache", result


def _fresh_cache(built_cache, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(built_cache[0], cache)  # copies modes too (0700 folder, 0755 library)
    lib = next((cache / "native").glob("csr_spmm-*.so"))
    return cache, lib


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _plant(lib, tmp_path):
    """Replace ``lib`` by a library whose constructor writes the marker; returns its source path."""
    src = tmp_path / "planted.c"
    src.write_text(_PLANTED_C)
    built = tmp_path / "planted.so"
    subprocess.run([native.compiler(), "-shared", "-fPIC", "-o", str(built), str(src)], check=True, timeout=120)
    shutil.copyfile(built, lib)
    return built


@needs_cc
def test_build_records_the_checksum_of_the_library(built_cache):
    lib = next((built_cache[0] / "native").glob("csr_spmm-*.so"))
    recorded = native.checksum_path(lib).read_text().split()
    assert recorded == [_sha256(lib), lib.name]
    assert (lib.parent.stat().st_mode & 0o077) == 0 and (lib.stat().st_mode & 0o022) == 0


@needs_cc
@pytest.mark.parametrize("damage", ["zeroed", "truncated"])
def test_damaged_cached_library_is_detected_and_never_loaded(built_cache, tmp_path, damage):
    cache, lib = _fresh_cache(built_cache, tmp_path)
    size = lib.stat().st_size
    with open(lib, "r+b") as f:  # in place: the same file, as a crash or a full disk leaves it
        if damage == "zeroed":
            f.write(b"\0" * size)
        else:
            f.truncate(size // 2)
    keep = tmp_path / "damaged-keep.so"
    os.link(lib, keep)  # keeps the damaged inode allocated, so its number cannot be reused
    info, stderr, result = _probe(cache, tmp_path, damage)
    assert keep.stat().st_ino not in info["inodes"]  # never mapped
    assert "does not match the SHA-256" in stderr and "WARNING" in stderr
    assert info["backend"] == "graphrec-native"  # rebuilt, then loaded
    assert lib.stat().st_size == size and _sha256(lib) == native.checksum_path(lib).read_text().split()[0]
    torch.testing.assert_close(result["out"], built_cache[1]["out"], rtol=0, atol=0)


@needs_cc
def test_planted_library_without_its_checksum_is_never_loaded(built_cache, tmp_path):
    cache, lib = _fresh_cache(built_cache, tmp_path)
    planted = _plant(lib, tmp_path)
    info, stderr, _ = _probe(cache, tmp_path, "planted")
    assert not (tmp_path / "planted-ran").exists()
    assert "does not match" in stderr and info["backend"] == "graphrec-native"
    assert _sha256(lib) != _sha256(planted)  # replaced by a fresh build
    _control_planted_library_runs_when_loaded(planted, tmp_path)


def _control_planted_library_runs_when_loaded(planted, tmp_path):
    """The planted library really runs code when loaded (so the tests above can fail)."""
    marker = tmp_path / "planted-ran"
    env = {**os.environ, "GRAPHREC_TEST_MARKER": str(marker)}
    subprocess.run([sys.executable, "-c", f"import ctypes; ctypes.CDLL({str(planted)!r})"], env=env,
                   check=True, timeout=60)
    assert marker.exists()


@needs_cc
@pytest.mark.parametrize("mode", [0o775, 0o757])
def test_planted_library_with_planted_checksum_in_a_writable_folder_is_refused(built_cache, tmp_path, mode):
    """Someone who can write the cache folder can plant a library AND its checksum: the ownership
    and permission check stops that before anything is hashed or loaded; torch computes instead,
    with the same results."""
    cache, lib = _fresh_cache(built_cache, tmp_path)
    planted = _plant(lib, tmp_path)
    native.checksum_path(lib).write_text(f"{_sha256(lib)}  {lib.name}\n")
    os.chmod(lib.parent, mode)
    info, stderr, result = _probe(cache, tmp_path, "refused")
    assert not (tmp_path / "planted-ran").exists()
    assert info["backend"].startswith("torch (refused") and "writable by group or others" in info["why"]
    assert "WARNING" in stderr and str(lib.parent) in stderr
    assert _sha256(lib) == _sha256(planted)  # nothing built in a folder that is not ours alone
    golden = built_cache[1]
    torch.testing.assert_close(result["out"].double(), golden["oracle"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(result["out"], golden["out"], rtol=1e-5, atol=1e-6)
    _control_planted_library_runs_when_loaded(planted, tmp_path)


@needs_cc
@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="chown to another user needs root")
def test_library_owned_by_another_user_is_refused_and_rebuilt(built_cache, tmp_path):
    cache, lib = _fresh_cache(built_cache, tmp_path)
    _plant(lib, tmp_path)
    side = native.checksum_path(lib)
    side.write_text(f"{_sha256(lib)}  {lib.name}\n")
    for p in (lib, side):
        os.chown(p, 65534, -1)
    info, stderr, _ = _probe(cache, tmp_path, "owner")
    assert not (tmp_path / "planted-ran").exists()
    assert "owned by uid 65534" in stderr and info["backend"] == "graphrec-native"
    assert lib.stat().st_uid == os.getuid()  # replaced by our own build


@needs_cc
def test_cache_folder_of_another_user_is_refused(built_cache, tmp_path):
    if not hasattr(os, "getuid") or os.getuid() != 0:
        pytest.skip("chown to another user needs root")
    cache, lib = _fresh_cache(built_cache, tmp_path)
    os.chown(lib.parent, 65534, -1)
    info, _, _ = _probe(cache, tmp_path, "folder-owner")
    assert info["backend"].startswith("torch (refused") and "owned by uid 65534" in info["why"]
