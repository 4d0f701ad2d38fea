"""The peers the GPU benchmarks time beside ours, loaded and called as engines call them."""

from __future__ import annotations

import importlib
import os
import sys
import types

import torch

from . import ROOT

# The Triton peers (the seed's and vLLM 0.33's kernels) beside the checkout.
PEERS = os.path.join(ROOT, "..", "shared", "peers")
TRITON_PEERS = (("seed triton", "vllm_triton_seed"), ("vllm 0.33", "vllm_triton_0_33"))


def load_peer(peers_dir, module):
    """A peer module: a Triton peer from peers_dir, or, with peers_dir None, an installed
    package (Dao's causal_conv1d, fla)."""
    if peers_dir is not None:
        sys.path.insert(0, os.path.abspath(peers_dir))
    try:
        return importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 (a missing or broken peer is skipped, not fatal)
        print(f"peer {module} unavailable: {type(e).__name__}: {e}")
        return None


def set_pdl(vllm_peer, enabled: bool) -> None:
    """Whether vLLM 0.33's Triton peer launches with programmatic dependent launch (it asks
    its platform object on every call)."""
    vllm_peer._CudaPlatform.is_arch_support_pdl = classmethod(lambda cls: enabled)


def triton_peers(peers_dir, vllm_pdl: bool) -> dict:
    """name -> module of the Triton peers found in peers_dir (none when it is None), vLLM
    0.33's launching with PDL or not."""
    peers = {}
    for name, module in TRITON_PEERS if peers_dir else ():
        peer = load_peer(peers_dir, module)
        if peer is not None:
            peers[name] = peer
    if "vllm 0.33" in peers:
        set_pdl(peers["vllm 0.33"], vllm_pdl)
    return peers


def engine_metadata(query_start_loc, block_m=8):
    """The Triton prefill's launch table built ahead of the call, as vLLM's attention
    metadata builder does once per step on the host: for each program, its sequence and its
    block of block_m tokens in it."""
    lengths = (query_start_loc[1:] - query_start_loc[:-1]).cpu()
    blocks = (lengths + block_m - 1) // block_m
    sequence = torch.repeat_interleave(torch.arange(len(blocks)), blocks)
    offset = torch.cat([torch.arange(int(n)) for n in blocks] or [torch.zeros(0)]).long()
    device = query_start_loc.device
    table = dict(
        tot=int(blocks.sum()),
        mlist=sequence.to(device, torch.int32),
        mlist_len=len(sequence),
        offsetlist=offset.to(device, torch.int32),
    )
    table["batch_ptr"], table["token_chunk_offset_ptr"] = table["mlist"], table["offsetlist"]
    return types.SimpleNamespace(
        nums_dict={block_m: table},
        batch_ptr=table["batch_ptr"],
        token_chunk_offset_ptr=table["token_chunk_offset_ptr"],
        cu_seqlen=int(query_start_loc[-1]),
    )
