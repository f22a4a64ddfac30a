"""The packed weight format of frozen shift layers: canonical codes, packing and their tables.

Canonical codes are ``neg << (code_bits - 1) | j`` with ``code_bits = 4`` for
``weight_bits <= 4`` and ``8`` up to 8 bits, ``j`` the magnitude index of
:class:`~autodsnn.shift.quant.CodeSet` (a code set with a zero level, like ps: ``j = 0`` is
zero, ``j >= 1`` is ``2^(shift_max - j + 1)``; a zero-free one, like q and dense: ``2^(shift_max - j)``;
whether a mode has zero is declared in :mod:`autodsnn.shift.modes`), zero codes with ``neg = 0``.
Rows are output units (conv: the weight flattened as ``(out, in/groups*kh*kw)``); 4-bit codes go
two per byte, the even column in the low nibble. With ``mode``, ``weight_bits`` and
``shift_max`` (the layer's range), that is the whole weight: 0.5 byte per weight up to 4 bits.

Exports (:func:`autodsnn.shift.export_codes`) store these packed rows; the deployed layers
(:mod:`autodsnn.shift.kernels`) run on them.
"""
from __future__ import annotations

import torch

from .quant import CodeSet

PANEL = 32  # outputs per CPU linear panel (native/shift_cpu.cpp)


def code_bits(weight_bits: int) -> int:
    """Width of a canonical code: 4 bits (two per byte) up to 4-bit weights, else 8."""
    return 4 if weight_bits <= 4 else 8


def canonical_codes(codes: CodeSet, sign: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """(sign int in {-1,0,1}, shift exponent) of shape (rows, ...) -> canonical uint8 codes of
    shape (rows, cols), on the CPU (see the module docstring)."""
    j = codes.encode(sign.cpu(), shift.cpu()).to(torch.int32) & ((1 << (codes.weight_bits - 1)) - 1)
    neg = (sign.cpu() < 0).to(torch.int32) << (code_bits(codes.weight_bits) - 1)
    return (neg | j).to(torch.uint8).reshape(sign.shape[0], -1)


def pack_codes(canonical: torch.Tensor, bits: int) -> torch.Tensor:
    """(O, K) canonical codes -> packed uint8 rows: (O, ceil(K/2)) for 4-bit codes (even column
    in the low nibble), else (O, K) one per byte."""
    canonical = canonical.to(torch.uint8).contiguous()
    if bits > 4:
        return canonical
    o, k = canonical.shape
    if k % 2:
        canonical = torch.cat([canonical, torch.zeros(o, 1, dtype=torch.uint8)], dim=1)
    return (canonical[:, 0::2] | (canonical[:, 1::2] << 4)).contiguous()


def unpack_codes(packed: torch.Tensor, bits: int, cols: int) -> torch.Tensor:
    """Packed rows -> (O, cols) canonical codes, the inverse of :func:`pack_codes`."""
    if bits > 4:
        return packed[:, :cols]
    low, high = packed & 0xF, packed >> 4
    return torch.stack([low, high], dim=2).reshape(packed.shape[0], -1)[:, :cols]


def decode_canonical(canonical: torch.Tensor, codes: CodeSet) -> tuple[torch.Tensor, torch.Tensor]:
    """Canonical codes -> (sign int8, shift int16), the inverse of :func:`canonical_codes`."""
    c = canonical.to(torch.int32)
    bits = code_bits(codes.weight_bits)
    j = c & ((1 << (bits - 1)) - 1)
    neg = (c >> (bits - 1)) & 1
    return codes.decode((neg << (codes.weight_bits - 1) | j).to(torch.uint8))


def _code_meanings(codes: CodeSet) -> list[tuple[int, bool, int | None]]:
    """(canonical code, negative, exponent) for every canonical code; exponent None for zero
    codes and for codes this code set cannot hold."""
    bits = code_bits(codes.weight_bits)
    max_j = 1 << (codes.weight_bits - 1)
    meanings = []
    for code in range(1 << bits):
        j, neg = code & ((1 << (bits - 1)) - 1), bool(code >> (bits - 1))
        held = j < max_j and not (codes.has_zero and j == 0)
        meanings.append((code, neg, codes.shift_max - j + int(codes.has_zero) if held else None))
    return meanings


def value_table(codes: CodeSet) -> torch.Tensor:
    """float32 value of every canonical code, shape (2^code_bits,) (codes a layer cannot hold
    decode to 0)."""
    table = torch.zeros(1 << code_bits(codes.weight_bits), dtype=torch.float32)
    for code, neg, e in _code_meanings(codes):
        if e is not None:
            table[code] = (-1.0 if neg else 1.0) * 2.0 ** e
    return table


def shift_table(codes: CodeSet, kbase: int) -> torch.Tensor:
    """int32 shift count (e - kbase) of every canonical code, shape (2^code_bits,); 32 for zero
    and unused codes."""
    table = torch.full((1 << code_bits(codes.weight_bits),), 32, dtype=torch.int32)
    for code, _, e in _code_meanings(codes):
        if e is not None and 0 <= e - kbase <= 30:
            table[code] = e - kbase
    return table


def to_panels(canonical: torch.Tensor, bits: int) -> torch.Tensor:
    """(O, K) canonical codes -> the CPU linear kernel's panel layout (P, K, 16 or 32 bytes),
    ``P = ceil(O / PANEL)``, outputs past O padded with zero codes."""
    o, k = canonical.shape
    p = -(-o // PANEL)
    padded = torch.zeros(p * PANEL, k, dtype=torch.uint8)
    padded[:o] = canonical
    blocks = padded.view(p, PANEL, k).transpose(1, 2)  # (P, K, 32)
    if bits == 8:
        return blocks.contiguous()
    return (blocks[:, :, :16] | (blocks[:, :, 16:] << 4)).contiguous()


__all__ = ["PANEL", "code_bits", "canonical_codes", "pack_codes", "unpack_codes", "decode_canonical", "value_table",
           "shift_table", "to_panels"]
