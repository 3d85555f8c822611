"""Hand-written LLVM IR for the innermost loop of sparse projections (Numba intrinsics).

A CSR row of a projection, over the whole batch, is ``row[b] = sum_k w_k * src[col_k, b]``.
Written as a Python loop, Numba's LLVM keeps ``row`` in memory (it cannot prove that ``row``
and ``src`` do not overlap), so every multiply-add also loads and stores the row, behind
run-time overlap checks and negative-index fix-ups. This intrinsic emits the loop over the row's
synapses directly: the batch is held in vector registers (``lanes``-wide accumulators, one per
``lanes`` batch elements) from the first synapse to the last, and the row is written once.

``csr_row_<W>(row, src, indices, data, lo, hi, factor, add, col0)`` computes, for ``k`` in
``lo..hi-1``, ``acc += (factor * data[k]) * src[indices[k], col0:col0 + W]`` and then
``row[col0:col0 + W] = acc`` (``add == 0``) or ``+= acc`` (otherwise). ``W`` is a multiple of
``LANES`` up to ``MAX_WIDTH`` (the accumulators must fit in registers): a batch that is a multiple
of ``LANES`` is covered by pieces of at most ``MAX_WIDTH`` (:func:`pieces`); other batches use
the plain loop. The caller guarantees the indices are in range (they come from our own CSR
arrays) and ``col0 + W <= batch``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

SOURCE_HASH = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]  # part of each kernel's cache key
LANES = 8  # float32 lanes of one accumulator: a 256-bit register (AVX2); LLVM splits or joins as the CPU needs
MAX_WIDTH = 64  # 8 accumulators: with the loads they fit in the 16 vector registers of AVX2


def supported(batch: int, dtype) -> bool:
    """Whether the generated kernels use the ``csr_row_<W>`` loops for this batch and precision."""
    return np.dtype(dtype) == np.float32 and batch % LANES == 0 and batch > 0


def pieces(batch: int) -> list[tuple[int, int]]:
    """(first batch element, width) of the loops that cover a supported batch."""
    return [(c, min(MAX_WIDTH, batch - c)) for c in range(0, batch, MAX_WIDTH)]


def _make_csr_row(width: int):
    n_vec = width // LANES

    @intrinsic
    def csr_row(typingctx, row, src, indices, data, lo, hi, factor, add, col0):
        """See the module docstring. ``row``: float32[B], ``src``: float32[N, B] (rows contiguous)."""
        # C-contiguous arrays only: the IR steps through memory assuming it (src's rows may be a
        # ring-buffer slot: any row stride, each row contiguous, as in a C-ordered 3-d array)
        if not (isinstance(row, types.Array) and row.ndim == 1 and row.dtype == types.float32
                and isinstance(src, types.Array) and src.ndim == 2 and src.dtype == types.float32
                and isinstance(data, types.Array) and data.ndim == 1 and data.dtype == types.float32
                and isinstance(indices, types.Array) and indices.ndim == 1
                and isinstance(indices.dtype, types.Integer)
                and all(a.layout == "C" for a in (row, src, data, indices))):
            return None
        sig = types.void(row, src, indices, data, types.intp, types.intp, types.float32, types.intp, types.intp)

        def codegen(context, builder, signature, args):
            row_v, src_v, ind_v, data_v, lo_v, hi_v, factor_v, add_v, col0_v = args
            row_a = context.make_array(signature.args[0])(context, builder, row_v)
            src_a = context.make_array(signature.args[1])(context, builder, src_v)
            ind_a = context.make_array(signature.args[2])(context, builder, ind_v)
            data_a = context.make_array(signature.args[3])(context, builder, data_v)

            i32, i64 = ir.IntType(32), ir.IntType(64)
            vec = ir.VectorType(ir.FloatType(), LANES)
            stride = builder.extract_value(src_a.strides, 0)  # bytes from one source row to the next
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec, vec, vec]),
                                                 f"llvm.fma.v{LANES}f32")
            src_base = builder.bitcast(src_a.data, ir.IntType(8).as_pointer())
            row_ptr = builder.bitcast(builder.gep(row_a.data, [col0_v]), vec.as_pointer())
            zero = ir.Constant(vec, [0.0] * LANES)
            broadcast = ir.Constant(ir.VectorType(i32, LANES), [0] * LANES)

            entry = builder.block
            loop = builder.append_basic_block("csr.loop")
            body = builder.append_basic_block("csr.body")
            done = builder.append_basic_block("csr.done")
            builder.branch(loop)

            builder.position_at_end(loop)  # k and the accumulators, carried from synapse to synapse
            k = builder.phi(i64, "k")
            accs = [builder.phi(vec, f"acc{v}") for v in range(n_vec)]
            k.add_incoming(lo_v, entry)
            for acc in accs:
                acc.add_incoming(zero, entry)
            builder.cbranch(builder.icmp_signed("<", k, hi_v), body, done)

            builder.position_at_end(body)  # one synapse: w * src[col, :] into every accumulator
            col = builder.load(builder.gep(ind_a.data, [k]))
            if col.type.width < 64:
                col = builder.sext(col, i64) if indices.dtype.signed else builder.zext(col, i64)
            weight = builder.fmul(builder.load(builder.gep(data_a.data, [k])), factor_v)
            wv = builder.insert_element(ir.Constant(vec, ir.Undefined), weight, ir.Constant(i32, 0))
            wv = builder.shuffle_vector(wv, ir.Constant(vec, ir.Undefined), broadcast)
            src_row = builder.bitcast(builder.gep(src_base, [builder.mul(col, stride)]), src_a.data.type)
            src_row = builder.bitcast(builder.gep(src_row, [col0_v]), vec.as_pointer())
            updated = []
            for v, acc in enumerate(accs):
                x = builder.load(builder.gep(src_row, [ir.Constant(i64, v)]), align=4)
                updated.append(builder.call(fma, [wv, x, acc]))
            k_next = builder.add(k, ir.Constant(i64, 1))
            builder.branch(loop)
            k.add_incoming(k_next, body)
            for acc, new in zip(accs, updated):
                acc.add_incoming(new, body)

            builder.position_at_end(done)  # the row, written once
            is_add = builder.icmp_signed("!=", add_v, ir.Constant(i64, 0))
            for v, acc in enumerate(accs):
                ptr = builder.gep(row_ptr, [ir.Constant(i64, v)])
                old = builder.load(ptr, align=4)
                builder.store(builder.select(is_add, builder.fadd(old, acc), acc), ptr, align=4)
            return context.get_dummy_value()

        return sig, codegen

    csr_row.__name__ = csr_row.__qualname__ = f"csr_row_{width}"
    return csr_row


# one intrinsic per width, as module attributes the generated kernels import
for _width in range(LANES, MAX_WIDTH + 1, LANES):
    globals()[f"csr_row_{_width}"] = _make_csr_row(_width)
del _width
