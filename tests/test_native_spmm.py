"""The compiled CSR product equals a dense float64 oracle for every column count (vector blocks of
64 and 16 and the scalar tail), with and without the fused addend, gives bit-identical results for
any thread count, and falls back to torch (with a reason) when it cannot be built or is off."""
import ctypes
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from graphrec import native
from graphrec.graphs import native_spmm
from graphrec.graphs.sparse import _mm
from graphrec.nn.batch_propagation import _transpose

needs_native = pytest.mark.skipif(native_spmm._load() is None, reason="no native product here")


def _random_csr(n_rows, n_cols, density, seed):
    g = torch.Generator().manual_seed(seed)
    dense = (torch.rand(n_rows, n_cols, generator=g) < density).float() * torch.randn(n_rows, n_cols, generator=g)
    dense[n_rows // 2] = 0  # an empty row
    if n_rows > 3:
        dense[-1] = 0  # and the last row empty (end-of-crow handling)
    return dense.to_sparse_csr(), dense


def _within_float32_bound(got, dense, x, add=None):
    """|got - exact| <= gamma_n * (|A||x| + |add|) elementwise: the standard error bound of an n-term float32
    sum (n = the row's entries + 1), so the check holds whatever order or FMA use a CPU's code takes."""
    exact = dense.double() @ x.double() + (add.double() if add is not None else 0)
    mag = dense.double().abs() @ x.double().abs() + (add.double().abs() if add is not None else 0)
    n = (dense != 0).sum(1, keepdim=True).double() + 1
    bound = 1.01 * n * 2.0 ** -24 / (1 - n * 2.0 ** -24) * mag + 1e-30
    err = (got.double() - exact).abs()
    assert (err <= bound).all(), f"worst error {float(err.max()):.3g} beyond the float32 bound"


@needs_native
@pytest.mark.parametrize("d", [1, 5, 16, 17, 64, 80, 130])
@pytest.mark.parametrize("with_add", [False, True])
def test_native_product_equals_dense_oracle(d, with_add):
    adj, dense = _random_csr(57, 41, 0.2, seed=d)
    x = torch.randn(41, d)
    add = torch.randn(57, d) if with_add else None
    out = native_spmm.csr_spmm(adj, x, add)
    assert out is not None and out.shape == (57, d)
    _within_float32_bound(out, dense, x, add)
    # the model-facing entry point takes the same path
    torch.testing.assert_close(_mm(adj, x, add), out, rtol=0, atol=0)


@needs_native
def test_native_product_is_identical_for_every_thread_count():
    adj, _ = _random_csr(3000, 2000, 0.01, seed=7)  # enough work to use several threads
    x, add = torch.randn(2000, 64), torch.randn(3000, 64)
    before = torch.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3, 5):
            torch.set_num_threads(t)
            outs.append((native_spmm.csr_spmm(adj, x), native_spmm.csr_spmm(adj, x, add)))
    finally:
        torch.set_num_threads(before)
    for plain, fused in outs[1:]:
        assert torch.equal(plain, outs[0][0]) and torch.equal(fused, outs[0][1])


@needs_native
def test_native_product_agrees_with_torch_on_a_graph_sized_product():
    adj, dense = _random_csr(4000, 4000, 0.003, seed=11)
    x = torch.randn(4000, 64)
    ref = torch.sparse.mm(adj, x)
    # torch and the compiled product may round differently (summation order, FMA on one CPU and not
    # another); both must stay inside the float32 error bound of the exact product
    _within_float32_bound(ref, dense, x)
    _within_float32_bound(native_spmm.csr_spmm(adj, x), dense, x)
    _within_float32_bound(native_spmm.csr_spmm(adj, x, ref), dense, x, ref)


def test_native_product_declines_what_it_does_not_handle():
    adj, dense = _random_csr(10, 8, 0.3, seed=1)
    assert native_spmm.csr_spmm(adj.to(torch.float64), torch.randn(8, 4, dtype=torch.float64)) is None
    assert native_spmm.csr_spmm(adj.to_sparse_coo(), torch.randn(8, 4)) is None
    assert native_spmm.csr_spmm(adj, torch.randn(8, 4, dtype=torch.float64)) is None
    # _mm still answers them through torch
    x64 = torch.randn(8, 4, dtype=torch.float64)
    torch.testing.assert_close(_mm(adj.to(torch.float64), x64), dense.double() @ x64)
    add = torch.randn(10, 4)
    torch.testing.assert_close(_mm(adj.to_sparse_coo(), x64.float(), add), dense @ x64.float() + add)


@needs_native
def test_native_product_rejects_a_misshapen_addend_or_output():
    adj, _ = _random_csr(10, 8, 0.3, seed=2)
    with pytest.raises(ValueError, match=r"add must be a float32 CPU \(10, 4\)"):
        native_spmm.csr_spmm(adj, torch.randn(8, 4), torch.randn(9, 4))
    with pytest.raises(ValueError, match=r"out must be a contiguous float32 CPU \(10, 4\)"):
        native_spmm.csr_spmm(adj, torch.randn(8, 4), out=torch.empty(4, 10).t())


@pytest.mark.parametrize("native", [True, False])
def test_product_into_a_given_table_with_and_without_addend(monkeypatch, native):
    if not native:
        monkeypatch.setattr(native_spmm, "csr_spmm", lambda adj, x, add=None, out=None: None)
    adj, dense = _random_csr(30, 20, 0.2, seed=3)
    x, add = torch.randn(20, 16), torch.randn(30, 16)
    torch.testing.assert_close(_mm(adj, x, add), dense @ x + add, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(_mm(adj, x), dense @ x, rtol=1e-5, atol=1e-5)
    out = torch.full((30, 16), float("nan"))  # stale contents must not leak into the result
    assert _mm(adj, x, add, out=out).data_ptr() == out.data_ptr()
    torch.testing.assert_close(out, dense @ x + add, rtol=1e-5, atol=1e-5)
    out.fill_(float("nan"))
    _mm(adj, x, out=out)
    torch.testing.assert_close(out, dense @ x, rtol=1e-5, atol=1e-5)
    coo_out = torch.empty(30, 16)  # the COO path honours out= too
    _mm(adj.to_sparse_coo(), x, add, out=coo_out)
    torch.testing.assert_close(coo_out, dense @ x + add, rtol=1e-5, atol=1e-5)


def _probe(env_extra, cache_dir):
    code = textwrap.dedent("""
        import torch
        from graphrec.graphs import native_spmm
        adj = torch.eye(3).to_sparse_csr()
        print(native_spmm.backend())
        print(native_spmm.csr_spmm(adj, torch.ones(3, 2)) is None)
    """)
    env = {**os.environ, "GRAPHREC_CACHE_DIR": str(cache_dir), **env_extra}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split("\n")


def test_switched_off_uses_torch_and_says_why(tmp_path):
    backend, declined, _ = _probe({"GRAPHREC_NATIVE": "0"}, tmp_path)
    assert backend == "torch (GRAPHREC_NATIVE=0)" and declined == "True"
    assert not any(tmp_path.rglob("*.so"))


def test_no_compiler_uses_torch_and_says_why(tmp_path):
    backend, declined, _ = _probe({"CC": "", "PATH": str(tmp_path), "GRAPHREC_NATIVE": "1"}, tmp_path / "cache")
    assert backend.startswith("torch (no C compiler") and declined == "True"


def test_failed_build_uses_torch_and_says_why(tmp_path, monkeypatch):
    broken = tmp_path / "broken.c"
    broken.write_text("this is not C\n")
    monkeypatch.setenv("GRAPHREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("GRAPHREC_NATIVE", raising=False)
    if native.compiler() is None:
        pytest.skip("no C compiler here")
    native.forget("broken_probe")
    try:
        assert native.load("broken_probe", broken) is None
        assert "failed" in native.why_not("broken_probe")
    finally:
        native.forget("broken_probe")
    assert not any((tmp_path / "cache").rglob("*.so"))  # no half-built library left behind


@needs_native
def test_build_is_cached_and_concurrent_builds_agree(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c",
                               "from graphrec.graphs import native_spmm; print(native_spmm.backend())"],
                              env={**os.environ, "GRAPHREC_CACHE_DIR": str(tmp_path)}, stdout=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert outs == ["graphrec-native"] * 3
    libs = list((tmp_path / "native").glob("*.so"))
    assert len(libs) == 1 and not list((tmp_path / "native").glob("tmp*"))


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("shape", [(7, 11), (40, 9), (1, 5), (300, 200)])
def test_block_transpose_equals_torch_transpose(shape, native, monkeypatch):
    if not native:
        monkeypatch.setattr(native_spmm, "csr_transpose", lambda adj: None)
    elif native_spmm._load() is None:
        pytest.skip("no native code here")
    adj, dense = _random_csr(*shape, 0.3, seed=shape[0])
    t = _transpose(adj)
    ref = adj.t().to_sparse_csr()
    assert t.shape == ref.shape
    assert torch.equal(t.crow_indices(), ref.crow_indices())
    assert torch.equal(t.col_indices(), ref.col_indices())
    assert torch.equal(t.values(), ref.values())
    assert torch.equal(t.to_dense(), dense.t())


def test_graph_scratch_table_is_reused_per_shape():
    from graphrec.graphs.sparse import SparseGraph
    adj, _ = _random_csr(12, 12, 0.3, seed=4)
    graph = SparseGraph(adj)
    like = torch.randn(3, 8)
    a = graph.scratch_table(12, like)
    assert a.shape == (12, 8) and graph.scratch_table(12, like).data_ptr() == a.data_ptr()
    b = graph.scratch_table(12, torch.randn(3, 5))  # another width: a new table replaces the old
    assert b.shape == (12, 5) and len(graph._scratch) == 1


@needs_native
def test_kernel_signatures_are_set_whoever_loads_the_library_first():
    native.forget("csr_spmm")
    lib = native.load("csr_spmm")  # loaded directly, not through native_spmm
    assert lib.graphrec_csr_spmm.argtypes[6] is ctypes.c_int64  # nrows: a 64-bit argument
    assert lib.graphrec_csr_transpose.argtypes[3] is ctypes.c_int64
    adj, dense = _random_csr(40, 30, 0.2, seed=9)
    x = torch.randn(30, 64)
    torch.testing.assert_close(native_spmm.csr_spmm(adj, x), dense @ x, rtol=1e-5, atol=1e-5)
    assert native_spmm._load() is lib
