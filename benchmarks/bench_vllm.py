"""vLLM's decode calls (CONTRACT 1.4) timed as CONTRACT 4 says: ours (causal_conv1d_kernels.vllm)
beside vLLM 0.33's Triton kernel called with vLLM's arguments, each against a device copy of
the same bytes, in one run, with the L2 flushed before every call and each call replayed from
a CUDA graph of its own (benchmark.time_cuda_flushed_us: no host time in the device time),
median.

    python -m benchmarks vllm --peers-dir ../shared/peers

Cases (bf16 x, weights and states, W 4, bias, SiLU, D 8192, 256 rows, lines drawn at random
from a 1024-line cache):
- spec decode: 1 + 3 draft tokens per row (varlen x of 1024 tokens, max_query_len 4),
  num_accepted_tokens random in [1, 4], state 4 + 3 columns.
- varlen decode: the same with 1 to 4 tokens per row (random), as a batch mixing rows that
  just started speculating with rows in full swing.
- plain decode: one token per row, x (256, 8192), state 3 columns.

Writes <out-dir>/<name>.md, .json and .png.
"""

from __future__ import annotations

import datetime

import torch
from causal_conv1d_kernels import __version__, vllm
from causal_conv1d_kernels.testing import benchmark

from . import report, subcommand_parser
from .peers import PEERS, load_peer, set_pdl

DIM, WIDTH, ROWS, LINES = 8192, 4, 256, 1024


def make_case(name: str, seed: int = 0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    dev, bf16 = "cuda", torch.bfloat16

    def randn(*shape):
        return torch.randn(*shape, device=dev, generator=g).to(bf16)

    lines = torch.randperm(LINES - 1, device=dev, generator=g)[:ROWS].int() + 1  # 0: null block
    kwargs = dict(
        weight=randn(DIM, WIDTH), bias=randn(DIM), activation="silu", conv_state_indices=lines
    )
    if name == "plain decode":
        state = randn(LINES, WIDTH - 1, DIM).transpose(1, 2)  # vLLM's layout: stride(1) == 1
        kwargs.update(x=randn(ROWS, DIM), conv_state=state)
        tokens, window, written = ROWS, WIDTH - 1, WIDTH - 1
    else:
        lmax = 4
        if name == "spec decode":
            lengths = torch.full((ROWS,), lmax, device=dev)
        else:
            lengths = torch.randint(1, lmax + 1, (ROWS,), device=dev, generator=g)
        qsl = torch.zeros(ROWS + 1, dtype=torch.int32, device=dev)
        qsl[1:] = torch.cumsum(lengths, 0)
        tokens = int(qsl[-1])
        # A state of 4 + 3 columns in vLLM's layout: (lines, D, S) with stride(1) == 1.
        state = torch.randn(LINES, WIDTH + 3, DIM, device=dev, generator=g).to(bf16)
        kwargs.update(
            x=randn(tokens, DIM),
            conv_state=state.transpose(1, 2),
            num_accepted_tokens=torch.randint(
                1, lmax + 1, (ROWS,), dtype=torch.int32, device=dev, generator=g
            ),
            query_start_loc=qsl,
            max_query_len=lmax,
        )
        window, written = WIDTH - 1, (WIDTH - 2) * ROWS + tokens
        written = written / ROWS  # columns per row, on average
    element = 2
    nbytes = int(
        element * DIM * (2 * tokens + ROWS * window + ROWS * written)
    )  # x read, out written, window read, state columns written
    return kwargs, nbytes


def time_us(fn) -> float:
    return benchmark.time_cuda_flushed_us(fn, min_run_time=0.5)


def run(peers_dir: str | None):
    peer = load_peer(peers_dir, "vllm_triton_0_33") if peers_dir else None
    if peer is not None:
        set_pdl(peer, False)  # as the bench subcommand times it
    rows = []
    for name in ["spec decode", "varlen decode", "plain decode"]:
        kwargs, nbytes = make_case(name)
        src = torch.empty(nbytes // 2, dtype=torch.uint8, device="cuda").random_()
        dst = torch.empty_like(src)
        ours_args = dict(
            kwargs, conv_state=kwargs["conv_state"].clone(), out=torch.empty_like(kwargs["x"])
        )
        row = dict(case=name, bytes=nbytes, copy_us=time_us(lambda d=dst, s=src: d.copy_(s)))
        row["ours_us"] = time_us(lambda a=ours_args: vllm.causal_conv1d_update(**a))
        if peer is not None:
            peer_args = dict(
                kwargs, conv_state=kwargs["conv_state"].clone(), out=torch.empty_like(kwargs["x"])
            )
            row["vllm 0.33_us"] = time_us(lambda a=peer_args: peer.causal_conv1d_update(**a))
        rows.append(row)
        print(row, flush=True)
    return rows


def main(argv=None) -> int:
    parser = subcommand_parser("vllm", __doc__)
    parser.add_argument("--peers-dir", default=PEERS)
    parser.add_argument("--name", default="gpu-h100-vllm")
    parser.add_argument("--out-dir", default=report.RESULTS)
    args = parser.parse_args(argv)
    rows = run(args.peers_dir)
    device = torch.cuda.get_device_name()
    header = (
        f"# vLLM decode calls, {device}\n\n{datetime.date.today()}, causal_conv1d_kernels "
        f"{__version__}, torch {torch.__version__}. Median, L2 flushed before every call, each "
        "call replayed from a CUDA graph of its own; vLLM 0.33's kernel with vLLM's arguments, "
        "PDL off (no preceding kernel to overlap).\n"
    )
    text = report.markdown(rows, header)
    meta = dict(device=device, torch=torch.__version__)
    report.write(args.out_dir, args.name, text, meta, rows, f"vLLM decode calls, {device}")
    print(text)
    return 0
