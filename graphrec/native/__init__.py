"""graphrec's optional compiled kernels: C sources beside this file, built on first use and loaded
through ctypes. They are accelerators, never requirements:

* each source ``<name>.c`` is compiled with the system C compiler (``$CC``, else ``cc``/``gcc``)
  and ``-O3 -march=native -fopenmp`` into ``$GRAPHREC_CACHE_DIR/native`` (default
  ``~/.cache/graphrec/native``), keyed by the source, the flags and the host CPU, and reused after;
  concurrent processes build beside the target and rename, so none loads a half-written library;
* OpenMP resolves to the libgomp torch has already loaded (same soname), so these loops share
  torch's thread pool instead of competing with it for the cores;
* without a compiler, when a build fails, or with ``GRAPHREC_NATIVE=0``, `load` returns None
  after logging one line, and callers use their torch code; a build without ``-march=native`` is
  not attempted (the plain-SSE2 product was slower than torch's);
* integrity: each build records the SHA-256 of the library beside it (``<lib>.so.sha256``). Before
  every load the library is opened once, checked (a regular file owned by the user or root, not
  writable by group or others, and so is its checksum file) and hashed, and the very file that was
  hashed is handed to ``dlopen`` (through ``/proc/self/fd``), so a truncated, zeroed or swapped
  library is never mapped (no SIGBUS, no planted code). A library that fails the check is rebuilt;
  a cache folder owned by someone else or writable by group/others is refused outright (nothing is
  built or loaded there: the torch code runs, with a logged warning).

Users: `graphrec.graphs.native_spmm` (CSR products, CSR transpose),
`graphrec.eval.screened_topk` (the screen's post-GEMM selection),
`graphrec.nn.candidate_argmax` (MixGCF's hardest-candidate choice) and `graphrec.nn.mi` (CLUB's
fitting step).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from graphrec.errors import UnsafeFileError
from graphrec.utils import log

SOURCES = Path(__file__).parent
_P, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
#: argument types of every exported function (all return int): without them ctypes would pass
#: Python ints as 32-bit C ints to the int64 parameters
SIGNATURES: Dict[str, Dict[str, list]] = {
    "csr_spmm": {
        "graphrec_csr_spmm": [_P] * 6 + [_I64, _I64, _INT],
        "graphrec_csr_transpose": [_P] * 3 + [_I64, _I64] + [_P] * 3,
    },
    "candidate_argmax": {
        "graphrec_candidate_argmax": [_P, _I64, _P, _I64, _I64, _P, _I64, _P, _INT],
    },
    "club_fit": {
        "graphrec_club_fit": [_P, _P] + [_I64] * 5 + [_P] * 10 + [_INT],
    },
    "screen_topk": {
        "graphrec_screen_select": ([_P] + [_I64] * 4 + [_P] * 3 + [_I64] + [_P] * 5 + [_I64] + [_P]
                                   + [_I64] * 2 + [_P] * 2 + [_INT]),
    },
}
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fPIC", "-shared")
ENV_SWITCH = "GRAPHREC_NATIVE"

CHECKSUM_SUFFIX = ".sha256"

_lock = threading.Lock()
_libs: Dict[str, Optional[ctypes.CDLL]] = {}
_why_not: Dict[str, str] = {}
#: descriptors of the loaded libraries, kept open for the life of the process: the loader knows a
#: library by the name it was opened under (/proc/self/fd/N), so N must never name another file
_open_fds: List[int] = []


def cache_dir() -> Path:
    base = os.environ.get("GRAPHREC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "graphrec")
    return Path(base) / "native"


def compiler() -> Optional[str]:
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and shutil.which(name):
            return name
    return None


def _host_key() -> str:
    """What -march=native depends on: the CPU model and flags (a copied cache must not be reused
    on another CPU)."""
    info = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "flags", "Features", "CPU part")):
                    info += line
                if line.strip() == "":
                    break
    except OSError:
        info += platform.processor()
    return info


def library_path(source: Path, cc: str) -> Path:
    """Where the library of ``source`` built by ``cc`` is cached (keyed by source, flags, CPU)."""
    key = hashlib.sha256(source.read_bytes() + " ".join((cc,) + FLAGS).encode()
                         + _host_key().encode()).hexdigest()[:16]
    return cache_dir() / f"{source.stem}-{key}.so"


def checksum_path(lib: Path) -> Path:
    """The file recording the SHA-256 of ``lib`` at build time."""
    return lib.with_name(lib.name + CHECKSUM_SUFFIX)


def _unsafe(st: os.stat_result, what: str, path: Path) -> Optional[str]:
    """Why a file or folder with status ``st`` cannot be trusted, or None: it must belong to this
    user (or root, who can change anything anyway) and be writable by nobody else."""
    if os.name != "posix":
        return None
    if st.st_uid not in (os.getuid(), 0):
        return f"{what} {path} is owned by uid {st.st_uid}, not by this user (uid {os.getuid()})"
    if st.st_mode & 0o022:
        return (f"{what} {path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):03o}); "
                f"fix with: chmod go-w {path}")
    return None


def _sha256_fd(fd: int) -> str:
    h = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    while True:
        block = os.read(fd, 1 << 20)
        if not block:
            return h.hexdigest()
        h.update(block)


_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _open_owned(path: Path, what: str) -> Tuple[Optional[int], Optional[os.stat_result], Optional[str]]:
    """(descriptor, its stat, None) of ``path`` opened without following links, when it is a
    regular file that only its owner (you or root) can write; else (None, None, why not)."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return None, None, f"no {what} {path.name}"
    except OSError as e:
        return None, None, f"{what} {path} cannot be opened ({e.strerror})"
    try:
        st = os.fstat(fd)
        why = f"{what} {path} is not a regular file" if not stat.S_ISREG(st.st_mode) else _unsafe(st, what, path)
    except OSError as e:
        why, st = f"{what} {path} cannot be read ({e.strerror})", None
    if why:
        os.close(fd)
        return None, None, why
    return fd, st, None


def _recorded_checksum(lib: Path) -> Tuple[Optional[str], Optional[str]]:
    """(the SHA-256 recorded for ``lib``, None) or (None, why there is no trustworthy one)."""
    side = checksum_path(lib)
    fd, _, why = _open_owned(side, "checksum file")
    if why:
        return None, why
    try:
        text = os.read(fd, 256).decode("ascii", "replace").split()
    finally:
        os.close(fd)
    digest = text[0].lower() if text else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        return None, f"checksum file {side} is malformed"
    return digest, None


def _open_verified(lib: Path) -> Tuple[Optional[int], Optional[str]]:
    """(an open descriptor of ``lib`` whose bytes match the recorded SHA-256, None) or
    (None, why the cached library must not be loaded). The descriptor pins the verified file: it
    is what `_dlopen` maps, whatever happens to the name afterwards."""
    fd, st, why = _open_owned(lib, "cached library")
    if why:
        return None, why
    try:
        expected, why = _recorded_checksum(lib)
        if why is None and _sha256_fd(fd) != expected:
            why = (f"cached library {lib} ({st.st_size} bytes) does not match the SHA-256 recorded "
                   f"when it was built (changed, truncated or replaced)")
    except OSError as e:
        why = f"cached library {lib} cannot be read ({e.strerror})"
    if why is not None:
        os.close(fd)
        return None, why
    return fd, None


def _build(source: Path, cc: str, target: Path) -> int:
    """Compile ``source`` into ``target`` (atomically), record its SHA-256 beside it, and return an
    open descriptor of the built library (the exact bytes that were hashed)."""
    folder = target.parent
    fd, tmp = tempfile.mkstemp(prefix="tmp", suffix=".so", dir=folder)
    os.close(fd)
    side_tmp = None
    try:
        proc = subprocess.run([cc, *FLAGS, "-o", tmp, str(source)], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{cc} {' '.join(FLAGS)} failed: {proc.stderr.strip()[-500:]}")
        os.chmod(tmp, 0o755)  # whatever the umask: a group-writable library would be refused next time
        lib_fd = os.open(tmp, _OPEN_FLAGS)
        try:
            digest = _sha256_fd(lib_fd)
            sfd, side_tmp = tempfile.mkstemp(prefix="tmp", suffix=CHECKSUM_SUFFIX, dir=folder)
            with os.fdopen(sfd, "w") as f:
                f.write(f"{digest}  {target.name}\n")
            os.chmod(side_tmp, 0o644)
            # a reader between the two renames sees a mismatch and rebuilds: never a wrong load
            os.replace(tmp, target)
            os.replace(side_tmp, checksum_path(target))
        except BaseException:
            os.close(lib_fd)
            raise
        return lib_fd
    finally:
        for p in (tmp, side_tmp):
            if p and os.path.exists(p):
                os.unlink(p)


def _dlopen(fd: int, lib: Path) -> ctypes.CDLL:
    """Map the file open as ``fd`` (verified), not whatever ``lib`` names by now."""
    proc_fd = f"/proc/self/fd/{fd}"
    if not os.path.exists(proc_fd):
        os.close(fd)  # no /proc: load by name (the folder check above still applies)
        return ctypes.CDLL(str(lib))
    try:
        handle = ctypes.CDLL(proc_fd)
    except BaseException:
        os.close(fd)
        raise
    _open_fds.append(fd)
    return handle


def _library(name: str, source: Path, cc: str) -> ctypes.CDLL:
    folder = cache_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    why = _unsafe(os.stat(folder), "cache folder", folder)
    if why:  # someone else could plant a library there: neither build nor load
        raise UnsafeFileError(why)
    target = library_path(source, cc)
    fd = None
    if os.path.lexists(target):
        fd, why = _open_verified(target)
        if why:
            level = log.info if why.startswith("no checksum file") else log.warning  # a cache built before checksums
            level("native %s: %s; rebuilding it", name, why)
    if fd is None:
        fd = _build(source, cc, target)
    return _dlopen(fd, target)


def load(name: str, source: Optional[Path] = None) -> Optional[ctypes.CDLL]:
    """The compiled library of ``<name>.c`` (or of ``source``), or None (reason in `why_not`)."""
    if name in _libs:
        return _libs[name]
    with _lock:
        if name in _libs:
            return _libs[name]
        lib = None
        try:
            if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "off", "no"):
                raise RuntimeError(f"{ENV_SWITCH}=0")
            cc = compiler()
            if cc is None:
                raise RuntimeError("no C compiler ($CC, cc, gcc) on PATH")
            lib = _library(name, source or SOURCES / f"{name}.c", cc)
            for fn_name, argtypes in SIGNATURES.get(name, {}).items():
                fn = getattr(lib, fn_name)
                fn.restype, fn.argtypes = ctypes.c_int, argtypes
            _why_not[name] = ""
        except UnsafeFileError as exc:  # a cache another user can write: a warning, not a note
            _why_not[name] = f"refused: {exc}"
            log.warning("native %s refused (%s); using torch", name, exc)
        except Exception as exc:  # any other failure keeps the torch code; say so once
            _why_not[name] = str(exc)
            log.info("native %s not used (%s); using torch", name, exc)
        _libs[name] = lib
    return lib


def threads_for(work: int, one_thread_below: int) -> int:
    """Threads for a kernel call touching ``work`` entries: torch's count, or 1 below the caller's
    measured threshold (there OpenMP's start-up costs more than the second thread saves). Read
    at call time, so a kernel follows `torch.set_num_threads`."""
    import torch  # late: the loader itself needs no torch
    return 1 if work < one_thread_below else torch.get_num_threads()


def why_not(name: str) -> str:
    """Why ``name`` is not in use ("" when it is; "not loaded yet" before the first `load`)."""
    return _why_not.get(name, "not loaded yet")


def forget(name: str) -> None:
    """Drop the cached load result of ``name`` (tests)."""
    with _lock:
        _libs.pop(name, None)
        _why_not.pop(name, None)
