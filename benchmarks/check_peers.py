"""Checks the Triton peers' outputs against the float64 reference on the benchmark's GPU cases,
called as the bench subcommand calls them (engine-style launch table), and times each with and
without programmatic dependent launch, to tell a peer's real time from a timing artifact.

    python -m benchmarks check-peers --peers-dir ../shared/peers
"""

from __future__ import annotations

import torch
from causal_conv1d_kernels.testing import benchmark
from causal_conv1d_kernels.testing.reference import causal_conv1d_fn_ref, causal_conv1d_update_ref

from . import subcommand_parser
from .peers import PEERS, engine_metadata, load_peer, set_pdl


def main(argv=None) -> int:
    parser = subcommand_parser("check-peers", __doc__)
    parser.add_argument("--peers-dir", default=PEERS)
    args = parser.parse_args(argv)
    peer = load_peer(args.peers_dir, "vllm_triton_0_33")
    seed = load_peer(args.peers_dir, "vllm_triton_seed")
    for case in benchmark.GPU_CASES:
        inputs = benchmark.make_inputs(case, "cuda")
        for name, mod in (("vllm 0.33", peer), ("seed", seed)):
            if case.op == "fwd":
                states = inputs["conv_states"].clone()
                ref, ref_states = causal_conv1d_fn_ref(**dict(inputs, conv_states=states.clone()))
                meta = engine_metadata(inputs["query_start_loc"])
                extra = {"null_block_id": None} if name == "vllm 0.33" else {}
                args_ = dict(inputs, conv_states=states, **extra)
                out = mod.causal_conv1d_fn(**args_, activation="silu", metadata=meta)
                ok_states = torch.equal(states, ref_states)
            else:
                state = inputs["conv_state"].clone()
                ref, ref_state = causal_conv1d_update_ref(**dict(inputs, conv_state=state.clone()))
                extra = {"null_block_id": None} if name == "vllm 0.33" else {}
                # Each peer writes into its own copy of x (both write into x without out=;
                # timing on the shared x would feed outputs back into every later input).
                args_ = dict(inputs, conv_state=state, x=inputs["x"].clone())
                out = mod.causal_conv1d_update(**dict(args_, x=args_["x"].clone()), **extra)
                ok_states = torch.equal(state, ref_state)
            err = (out.double() - ref.double()).abs().max().item()
            times = {}
            for pdl in (True, False):
                if name == "vllm 0.33":
                    set_pdl(mod, pdl)
                if case.op == "fwd":
                    fn = lambda m=mod, a=args_, meta=meta: m.causal_conv1d_fn(  # noqa: E731
                        **a, activation="silu", metadata=meta
                    )
                else:
                    fn = lambda m=mod, a=args_, e=extra: m.causal_conv1d_update(**a, **e)  # noqa: E731
                times[pdl] = benchmark.time_cuda_flushed_us(fn, 0.3)
            print(
                f"{case.name} {name}: max err {err:.3g}, states exact {ok_states}, "
                f"{times[True]:.1f} us with PDL, {times[False]:.1f} us without",
                flush=True,
            )
    return 0
