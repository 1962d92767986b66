"""The command line turns bad input into ONE stderr line ``graphrec: error: ...`` naming the culprit,
exit code 2 and no traceback; ``--debug`` (before or after the subcommand) shows the traceback;
Ctrl-C is one line and 130; an internal error is one line with a hint to rerun with --debug, 1."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from graphrec import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _graphrec(args, cwd):
    """``python -m graphrec ARGS`` in ``cwd`` (runs started by mistake land there, not in the repo);
    info logging off so that stderr holds only what the error handling prints."""
    env = {**os.environ, "GRAPHREC_LOG": "WARNING", "PYTHONPATH": REPO}
    env.pop("GRAPHREC_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "graphrec", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=180)


def _one_error_line(proc, culprit):
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("graphrec: error: ") and culprit in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, culprit", [
    (["train", "--model", "no-such-model", "--quiet"], "no-such-model"),
    (["train", "--dataset", "no-such-data", "--quiet"], "no-such-data"),
    (["train", "--set", "train.no_such_key=1", "--quiet"], "train.no_such_key"),
    (["evaluate", "missing-run-dir"], "missing-run-dir"),
    (["train", "--model", "mf", "--set", "data.dataset_args={n_users:30}", "--quiet"], "'n_users:30'"),
    (["train", "--model", "mf", "--set", "data.extra_features={vec: no-such.npy}", "--quiet"], "no-such.npy"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, culprit):
    _one_error_line(_graphrec(args, tmp_path), culprit)


def test_bad_config_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lr: [1, 2\n  epochs: 3\n")  # unclosed flow sequence
    _one_error_line(_graphrec(["train", "--config", str(bad), "--quiet"], tmp_path), "bad.yaml")
    _one_error_line(_graphrec(["train", "--config", "absent.yaml", "--quiet"], tmp_path), "absent.yaml")


def test_malicious_checkpoint_is_one_line_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch '{marker}'",))

    torch.save({"components": {}, "x": Payload()}, tmp_path / "evil.pt")
    _one_error_line(_graphrec(["checkpoint", "convert", "evil.pt"], tmp_path), "evil.pt")
    assert not marker.exists()


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(tmp_path, where):
    args = ["evaluate", "missing-run-dir"]
    args = ["--debug", *args] if where == "before" else [*args, "--debug"]
    proc = _graphrec(args, tmp_path)
    assert proc.returncode != 0 and "Traceback (most recent call last)" in proc.stderr
    assert "missing-run-dir" in proc.stderr.splitlines()[-1]


# -- in-process: errors no real input triggers on purpose -------------------------------------

def _decode_error():
    """The UnicodeDecodeError a text reader without its own check would raise."""
    try:
        b"ab\xffcd".decode("utf-8")
    except UnicodeDecodeError as e:
        return e


def _failing_list(exc):
    def _list(args):
        raise exc
    return _list


@pytest.mark.parametrize("exc, code, expect", [
    (RuntimeError("shape mismatch\nin layer 3"), 1, "graphrec: internal error: RuntimeError: shape mismatch; "
                                                    "in layer 3 (rerun with --debug for the traceback)"),
    (KeyboardInterrupt(), 130, "graphrec: interrupted"),
    (KeyError("train"), 2, "graphrec: error: unknown key 'train'"),
    (KeyError("unknown model 'x'; known: a, b"), 2, "graphrec: error: unknown model 'x'; known: a, b"),
    (PermissionError(13, "Permission denied", "/data/x.csv"), 2, "graphrec: error: /data/x.csv: Permission denied"),
    (_decode_error(), 2, "graphrec: error: input is not valid utf-8 text: byte 0xff at offset 2"),
])
def test_main_maps_errors_to_one_line_and_exit_code(monkeypatch, capsys, exc, code, expect):
    from graphrec.commands import datasets
    monkeypatch.setattr(datasets, "_list", _failing_list(exc))
    monkeypatch.delenv("GRAPHREC_DEBUG", raising=False)
    assert cli.main(["datasets", "list"]) == code
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(expect), err
    monkeypatch.setenv("GRAPHREC_DEBUG", "1")  # the same error with --debug: raised, traceback shown
    with pytest.raises(type(exc)):
        cli.main(["datasets", "list"])


def test_debug_flag_is_not_taken_after_a_double_dash(monkeypatch):
    monkeypatch.delenv("GRAPHREC_DEBUG", raising=False)
    assert cli._split_debug(["train", "--debug", "--set", "x=1"]) == (["train", "--set", "x=1"], True)
    assert cli._split_debug(["train", "--", "--debug"])[0] == ["train", "--", "--debug"]
