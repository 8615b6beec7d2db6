"""clcNet's CLC block for inference (docs/design.md §1.2): IGC -> BN -> GC -> BN -> ReLU, BN folded,
channels_last, the interlace folded away.

**IGC as depthwise convolutions ("Z" path).** Write `c = M/g1` (IGC inputs per group, its CRF
size) and `r = L/g1` (outputs per group). Store the input *paired*: channel `i*c + t` at
position `t*g1 + i`. Then the channels_last memory of the `(B, M, H, W)` input is, unchanged, a
`(B, g1, H, c*W)` map whose pixel `(h, c*w + t)` holds channel `i*c + t` of pixel `(h, w)`. A
depthwise convolution of that map with a `k x c*k` kernel and stride `(s, c*s)` computes, for
channel `i`, `sum_{t,dh,dw} W[i*r + m, t, dh, dw] * x[i*c + t, h + dh, w + dw]`: output `m` of
IGC group `i`, with exactly the IGC's multiply-adds (`r * g1 * c*k*k` per pixel
`= L*(M/g1)*k*k`), on oneDNN's fast depthwise kernel instead of its slow small-group one. It is
the clcNet paper's "IGC with CRF size 2 as two depthwise convolutions" without the extra add.
Output `m` of every group lands at interlaced positions `m*g1 .. m*g1 + g1 - 1`
(`out[m*g1 + i] = in[i*r + m]`): the interlace costs nothing. Up to 28x28 pixels in the batch
the `r` outputs come from one call on the input repeated `r` times per pixel (a copy is cheaper
than a second oneDNN call there); on larger inputs from `r` calls.

**GC as GEMMs.** Group `j` of the grouped 1x1 convolution reads interlaced positions
`[j*L/g2, (j+1)*L/g2)`, i.e. column slices of the IGC output. Its output channels are permuted
in the weights so that they land in the order the next layer wants (the next CLC block's
pairing); they then form equally long, evenly spaced runs of output columns, and one batched
GEMM per group writes all runs in place (the input rows are shared by the runs: a stride-0
batch). BN2 is folded; the GEMMs accumulate onto the bias (one broadcast write instead of a
read-modify-write pass over the output), then ReLU in place.

**Hand-off between two CLC blocks on small maps.** Up to `MERGED_Z_MAX_ROWS` pixels the next
block copies its input into the repeated Z map anyway, so the copy can read any layout. There
a block whose successor is a CLC block on the Z path writes its GC output *group-major*: a
`(g2, B, H, W, N/g2)` tensor whose group `j` holds its own channels in the successor's pairing
order restricted to the group (position `t*(N/g2/c) + i'` holds channel `j*N/g2 + i'*c + t`).
All groups come from one call: a batched MKL GEMM into a contiguous result (a strided result is
a loop of single GEMMs, 10-40% slower at 7x7-28x28), or, where `kernels.Gemm` picks oneDNN,
one packed grouped 1x1 convolution whose `(P, N)` result is viewed with those strides. The
successor's copy reads runs of `N/g2/c` contiguous floats either way.

Without the interlace (clcNet-Ap) the same depthwise outputs are read by the GC as column
slices of every block (one GEMM per block). CRF sizes above 2, where oneDNN's grouped
convolution is as fast on this CPU, use the grouped convolution and read the interlace as a
strided view.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from search_space.blocks.clc import ClcBlock
from search_space.runtime.folding import (
    Order,
    Reorder,
    bn_affine,
    fold_bn,
    from_rows,
    inverse,
    rows,
    same_order,
    to_channels_last,
)
from search_space.runtime.kernels import Conv, Gemm

Z_MAX_CRF = 2  # c: the Z kernel is k x c*k; at c = 4 the grouped convolution is as fast
Z_MAX_OUT = 2  # r: outputs per IGC group
MERGED_Z_MAX_ROWS = 28 * 28  # up to here (B*H*W), repeating the input r times beats r calls


def paired_order(channels: int, crf: int) -> torch.Tensor:
    """Position `t*g1 + i` holds channel `i*c + t` (`c = crf`, `g1 = channels / c`)."""
    return torch.arange(channels).view(channels // crf, crf).t().reshape(-1)


def uses_depthwise(block: ClcBlock) -> bool:
    """Whether the block's IGC runs as depthwise convolutions (the "Z" path)."""
    conv = block.igc.conv
    c, r = conv.in_channels // conv.groups, conv.out_channels // conv.groups
    return c <= Z_MAX_CRF and r <= Z_MAX_OUT


def z_crf(block: nn.Module) -> int | None:
    """The CRF size of a CLC block whose IGC runs on the Z path (`None` for anything else):
    what a predecessor needs to hand its output over group-major."""
    if not isinstance(block, ClcBlock) or not uses_depthwise(block):
        return None
    conv = block.igc.conv
    return int(conv.in_channels // conv.groups)


def handoff_layout(x: torch.Tensor, groups: int, crf: int) -> torch.Tensor:
    """The group-major hand-off `(g2, B, H, W, N/g2)` of a `(B, N, H, W)` map in natural channel
    order, as a CLC block with `groups = g2` GC groups writes it for a successor with CRF size
    `crf` (module docstring); for benchmarks and tests."""
    b, n, h, w = x.shape
    gi = n // groups // crf
    g = x.permute(0, 2, 3, 1).reshape(b, h, w, groups, gi, crf).permute(3, 0, 1, 2, 5, 4)
    return g.reshape(groups, b, h, w, n // groups).contiguous()


def wanted_order(block: ClcBlock) -> Order:
    """The input order the fused block reads without a reorder (`None`: natural)."""
    conv = block.igc.conv
    if not uses_depthwise(block):
        return None
    return paired_order(conv.in_channels, conv.in_channels // conv.groups)


class FusedClc(nn.Module):
    """Inference form of a `ClcBlock` (see the module docstring)."""

    def __init__(
        self,
        block: ClcBlock,
        *,
        in_order: Order = None,
        out_order: Order = None,
        next_crf: int | None = None,
    ):
        """`next_crf`: the successor is a Z-path CLC block with this CRF size, reading
        `out_order` = its pairing; on small maps the output is then handed over group-major (see
        the module docstring)."""
        super().__init__()
        conv = block.igc.conv
        m_in, mid, g1, k = conv.in_channels, conv.out_channels, conv.groups, conv.kernel_size[0]
        c, r = m_in // g1, mid // g1
        self.interlace = not isinstance(block.igc.interlace, nn.Identity)
        self.stride, self.crf, self.g1, self.r = int(conv.stride[0]), c, g1, r
        self.zpath = uses_depthwise(block)
        wanted = wanted_order(block)
        self.reorder = None if same_order(in_order, wanted) else Reorder(in_order, wanted, m_in)

        # IGC + BN1 folded, in conv-output order: BN1 sits after the interlace, at position p.
        pos = torch.arange(mid)
        src = (pos % g1) * r + pos // g1 if self.interlace else pos  # conv channel at p
        scale, shift = bn_affine(block.bn)
        w1 = torch.empty_like(conv.weight.detach())
        b1 = torch.empty(mid, dtype=w1.dtype)
        w1[src] = conv.weight.detach()[src] * scale.view(-1, 1, 1, 1)
        b1[src] = shift
        if self.zpath:
            # K_m[i, 0, dh, c*dw + t] = W1[i*r + m, t, dh, dw]; merged: channel m*g1 + i.
            zw = w1.view(g1, r, c, k, k).permute(1, 0, 3, 4, 2).reshape(r * g1, 1, k, k * c)
            zb = b1.view(g1, r).t().reshape(-1)
            # the Z map's `k x c*k` depthwise convolution (module docstring)
            zs, zp = (self.stride, c * self.stride), (k // 2, c * (k // 2))
            self.igc = Conv(zw, zb, stride=zs, padding=zp, groups=r * g1)  # merged: all r at once
            self.z_convs = nn.ModuleList(  # output m from the plain Z map
                Conv(
                    zw[m * g1 : (m + 1) * g1],
                    zb[m * g1 : (m + 1) * g1],
                    stride=zs,
                    padding=zp,
                    groups=g1,
                )
                for m in range(r)
            )
        else:
            st = (self.stride, self.stride)
            self.igc = Conv(w1, b1, stride=st, padding=(k // 2, k // 2), groups=g1)

        # GC + BN2 folded; group j's output channels sorted by their stored position.
        gc_conv = block.gc[0]
        assert isinstance(gc_conv, nn.Conv2d)
        n_out, g2 = gc_conv.out_channels, gc_conv.groups
        w2, b2 = fold_bn(gc_conv.weight, gc_conv.bias, block.gc[1])
        w2 = w2.view(n_out, mid // g2)
        out_pos = torch.arange(n_out) if out_order is None else inverse(out_order)
        self.n_out = n_out
        self.bias = b2 if out_order is None else b2[out_order]
        n_g = n_out // g2
        self.groups: list[_GroupGemm] = []
        for j in range(g2):
            chans = torch.arange(j * n_g, (j + 1) * n_g)
            chans = chans[torch.argsort(out_pos[chans])]
            runs = _runs(out_pos[chans].tolist())
            layout = _regular(runs)
            pieces = self._pieces(w2[chans], j)
            if layout is not None:  # weights as (runs, K, run length)
                pieces = [
                    replace(
                        p, weight=p.weight.view(p.width, len(runs), -1).transpose(0, 1).contiguous()
                    )
                    for p in pieces
                ]
            self.groups.append(_GroupGemm(pieces, runs, layout))

        # Group-major hand-off (module docstring): group j's columns in pairing order.
        self.handoff: _Handoff | None = None
        if next_crf is not None and n_g % next_crf == 0:
            local = paired_order(n_g, next_crf)
            pieces_g = [self._pieces(w2[j * n_g + local], j) for j in range(g2)]
            bias_g = b2.view(g2, n_g)[:, local].reshape(g2, 1, n_g).contiguous()
            self.handoff = _Handoff(pieces_g, bias_g)

    def _pieces(self, wj: torch.Tensor, j: int) -> list[_Piece]:
        """GC group `j`'s GEMM operands: `wj` holds its output channels' weights `(n, L/g2)`,
        column `q` reading IGC output position `j*L/g2 + q`; one piece per `_column_runs` run,
        weight `(K, n)`."""
        l_g = wj.shape[1]
        return [
            _Piece(
                m,
                col,
                len(qs),
                m * self.g1 + col,
                wj[:, [q - j * l_g for q in qs]].t().contiguous(),
            )
            for m, col, qs in self._column_runs(range(j * l_g, (j + 1) * l_g))
        ]

    def _column_runs(self, positions: range) -> list[tuple[int, int, list[int]]]:
        """Split IGC output positions into `(m, first column, positions)` runs of consecutive
        columns of one output block `m` (what one GEMM operand can read)."""
        g1, r = self.g1, self.r
        if self.interlace:  # position m*g1 + i: block m, column i
            where = [(p // g1, p % g1) for p in positions]
        elif self.zpath:  # no interlace: position i*r + m is output m of group i
            where = [(p % r, p // r) for p in positions]
        else:  # grouped conv without interlace: one block in conv order
            where = [(0, p) for p in positions]
        out: list[tuple[int, int, list[int]]] = []
        for m in sorted({m for m, _ in where}):
            cols = sorted(
                (col, p) for (mm, col), p in zip(where, positions, strict=True) if mm == m
            )
            for col, p in cols:
                if out and out[-1][0] == m and out[-1][1] + len(out[-1][2]) == col:
                    out[-1][2].append(p)
                else:
                    out.append((m, col, [p]))
        return out

    def _igc(self, x: torch.Tensor) -> tuple[list[torch.Tensor], int, int, int]:
        """The interlaced IGC output as row matrices, one per block of positions, and
        `(B, Ho, Wo)`."""
        b, m_in, h, w = x.shape
        c, r, g1 = self.crf, self.r, self.g1
        if not self.zpath:
            y = self.igc(x)
            yr = rows(y)
            if not self.interlace:
                return [yr], b, y.shape[2], y.shape[3]
            inter = yr.view(-1, g1, r)  # position m*g1 + i is inter[:, i, m]
            return [inter[:, :, m] for m in range(r)], b, y.shape[2], y.shape[3]
        # The Z map: pixel (h, c*w + t), channel i holds input channel i*c + t of pixel (h, w);
        # the channels_last input already is it in memory.
        wc, off = w * c, x.storage_offset()
        if b * h * w <= MERGED_Z_MAX_ROWS:  # the input r times per pixel: channel m*g1 + i
            rep = x.as_strided((b, h, wc, r, g1), (h * w * m_in, w * m_in, g1, 0, 1), off)
            return self._merged_z(rep.contiguous(), b, h, wc)
        z = x.as_strided((b, g1, h, wc), (h * w * m_in, 1, w * m_in, g1), off)
        ys = [conv(z) for conv in self.z_convs]
        return [rows(y) for y in ys], b, ys[0].shape[2], ys[0].shape[3]

    def _merged_z(
        self, rep: torch.Tensor, b: int, h: int, wc: int
    ) -> tuple[list[torch.Tensor], int, int, int]:
        """One depthwise convolution over the repeated Z map `rep`, contiguous `(B, H, W*c, r,
        g1)`: pixel `(h, c*w + t)`, channel `m*g1 + i` holds input channel `i*c + t`."""
        g = self.r * self.g1
        z = rep.as_strided((b, g, h, wc), (h * wc * g, 1, wc * g, g))
        y = self.igc(z)
        return [rows(y)], b, y.shape[2], y.shape[3]

    def _igc_handed_off(self, x: torch.Tensor) -> tuple[list[torch.Tensor], int, int, int]:
        """`_igc` of a group-major hand-off `(g2, B, H, W, N/g2)` from the previous block."""
        g2, b, h, w, n_g = x.shape
        c, r, gi = self.crf, self.r, n_g // self.crf
        if not self.zpath or self.reorder is not None or gi * g2 != self.g1 or x.stride(4) != 1:
            raise RuntimeError("a group-major hand-off reaches only the Z path in pairing order")
        # rep[b, h, w, t, m, j, i'] = channel (j*gi + i')*c + t = x[j, b, h, w, t*gi + i']
        sj, sb, sh, sw, _ = x.stride()
        shape = (b, h, w, c, r, g2, gi)
        strides = (sb, sh, sw, gi, 0, sj, 1)
        rep = x.as_strided(shape, strides, x.storage_offset()).contiguous()
        return self._merged_z(rep, b, h, w * c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5:  # group-major hand-off from the previous CLC block
            blocks, b, ho, wo = self._igc_handed_off(x)
        else:
            x = to_channels_last(x)
            if self.reorder is not None:
                x = self.reorder(x)
            blocks, b, ho, wo = self._igc(x)
        if self.handoff is not None and blocks[0].shape[0] <= MERGED_Z_MAX_ROWS:
            return self.handoff.write(blocks, b, ho, wo)
        # The GEMMs accumulate onto the bias (one broadcast write), which saves a read-modify-
        # write pass over the output (measured: 10-20% of a CLC block at 56x56-112x112).
        out = self.bias.expand(blocks[0].shape[0], self.n_out).contiguous()
        for group in self.groups:
            group.add_to(blocks, out)
        out.relu_()
        return from_rows(out, b, ho, wo)


@dataclass(frozen=True)
class _Run:
    """Columns `[src, src + length)` of a group's GEMM output go to `[dst, dst + length)`."""

    src: int
    dst: int
    length: int


def _runs(positions: list[int]) -> list[_Run]:
    runs: list[_Run] = []
    for src, dst in enumerate(positions):
        if runs and runs[-1].dst + runs[-1].length == dst:
            last = runs[-1]
            runs[-1] = _Run(last.src, last.dst, last.length + 1)
        else:
            runs.append(_Run(src, dst, 1))
    return runs


def _regular(runs: list[_Run]) -> tuple[int, int, int] | None:
    """`(first, spacing, length)` when the runs are equally long, consecutive in the GEMM output
    and evenly spaced in the block output."""
    length = runs[0].length
    step = runs[1].dst - runs[0].dst if len(runs) > 1 else length
    for i, run in enumerate(runs):
        if run.length != length or run.src != i * length or run.dst != runs[0].dst + i * step:
            return None
    return runs[0].dst, step, length


@dataclass(frozen=True)
class _Piece:
    """Columns `[col, col + width)` of IGC output block `m` (column `merged` of the one tensor
    when a single call produced every block), times `weight`."""

    m: int
    col: int
    width: int
    merged: int
    weight: torch.Tensor  # (K, n) or, for a regular group, (runs, K, run length)

    def rows(self, blocks: list[torch.Tensor], runs: int = 0) -> torch.Tensor:
        """The `(P, width)` input rows; with `runs`, repeated as a `(runs, P, width)` batch."""
        block, col = (blocks[0], self.merged) if len(blocks) == 1 else (blocks[self.m], self.col)
        p, ld = block.shape[0], block.stride(0)
        if runs and block.stride(1) == 1:  # one view: rows shared by every run (stride 0)
            shape, strides = (runs, p, self.width), (0, ld, 1)
            return block.as_strided(shape, strides, block.storage_offset() + col)
        a = block[:, col : col + self.width]
        return a.unsqueeze(0).expand(runs, -1, -1) if runs else a


@dataclass(frozen=True)
class _GroupGemm:
    """One GC group: GEMMs over the IGC pieces it reads, written to its output runs."""

    pieces: list[_Piece]
    runs: list[_Run]
    layout: tuple[int, int, int] | None  # (first column, spacing, run length) if regular

    def add_to(self, blocks: list[torch.Tensor], out: torch.Tensor) -> None:
        """Add this group's GEMM results to its columns of `out`."""
        if self.layout is None:
            g = torch.mm(self.pieces[0].rows(blocks), self.pieces[0].weight)
            for piece in self.pieces[1:]:
                g = torch.addmm(g, piece.rows(blocks), piece.weight)
            for run in self.runs:
                out[:, run.dst : run.dst + run.length].add_(g[:, run.src : run.src + run.length])
            return
        first, step, length = self.layout
        p, n = out.shape
        shape, strides = (len(self.runs), p, length), (step, n, 1)
        view = out.as_strided(shape, strides, out.storage_offset() + first)
        for piece in self.pieces:
            torch.baddbmm(view, piece.rows(blocks, len(self.runs)), piece.weight, out=view)


class _Handoff(nn.Module):
    """The GC written group-major for the next CLC block (module docstring). When the `k`-th
    piece of every group is an equally wide, evenly spaced column range of a single IGC output,
    all groups come from one batched GEMM per `k` into a contiguous `(g2, P, N/g2)` result; one
    GEMM per group and piece otherwise. When group `j` reads exactly the `j`-th block of columns
    and the weights are large enough for oneDNN (`kernels.Gemm`), one packed grouped 1x1
    convolution writes the groups pixel by pixel instead: the hand-off is then a view of the
    `(P, N)` result, strides `(N/g2, H*W*N, W*N, N, 1)`."""

    def __init__(self, pieces: list[list[_Piece]], bias: torch.Tensor):
        super().__init__()
        self.pieces, self.bias = pieces, bias
        self.g2, _, self.n_g = bias.shape
        # per k: (first column, spacing, width) and the stacked (g2, K, N/g2) weights
        self.batched: list[tuple[tuple[int, int, int], torch.Tensor]] | None = None
        if len({len(ps) for ps in pieces}) == 1:
            batched = []
            for k in range(len(pieces[0])):
                col = [ps[k] for ps in pieces]
                cols = [p.merged for p in col]
                spacing = cols[1] - cols[0] if self.g2 > 1 else 0
                if len({p.width for p in col}) > 1 or any(
                    c != cols[0] + j * spacing for j, c in enumerate(cols)
                ):
                    break
                layout = (cols[0], spacing, col[0].width)
                batched.append((layout, torch.stack([p.weight for p in col])))
            else:
                self.batched = batched
        self.gemm: Gemm | None = None
        if self.batched is not None and len(self.batched) == 1:
            (first, spacing, width), weight = self.batched[0]
            if first == 0 and spacing == width:  # group j: columns [j*K/g2, (j+1)*K/g2)
                self.gemm = Gemm(weight, bias.reshape(-1), "relu")

    def write(self, blocks: list[torch.Tensor], b: int, h: int, w: int) -> torch.Tensor:
        src = blocks[0]
        p = src.shape[0]
        gemm = self.gemm
        if gemm is not None and len(blocks) == 1 and src.shape[1] == gemm.k and gemm.onednn(p):
            y = gemm(src)  # (P, N): group j's N/g2 outputs of each pixel side by side
            n = gemm.n
            shape, strides = (self.g2, b, h, w, self.n_g), (self.n_g, h * w * n, w * n, n, 1)
            return y.as_strided(shape, strides, y.storage_offset())
        out = torch.empty(self.g2, p, self.n_g, dtype=src.dtype)
        if self.batched is not None and len(blocks) == 1:
            start = self.bias.expand(self.g2, p, self.n_g)
            for k, ((first, spacing, width), weight) in enumerate(self.batched):
                off = src.storage_offset() + first
                a = src.as_strided((self.g2, p, width), (spacing, src.stride(0), 1), off)
                torch.baddbmm(start if k == 0 else out, a, weight, out=out)
        else:
            for j, pieces in enumerate(self.pieces):
                start = self.bias[j].expand(p, self.n_g)
                for k, piece in enumerate(pieces):
                    acc = start if k == 0 else out[j]
                    torch.addmm(acc, piece.rows(blocks), piece.weight, out=out[j])
        out.relu_()
        return out.view(self.g2, b, h, w, self.n_g)
