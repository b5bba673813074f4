"""Policy inference latency per chunk on CPU, for each backbone (default sizes, or a checkpoint).

Prints one JSON object. Targets (issue 5): p50 <= 40 ms per chunk for Diffusion Policy
(DDIM, ``inference_steps`` denoising steps), <= 15 ms for ACT. Latency is what the policy
server measures: ``act(observation)`` on a 96x96 frame, history and resizing included.

    python bench/policy.py [--backbones diffusion act] [--checkpoint DIR ...] [--threads 1] [--queries 200]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from tqdm import tqdm

from hiwm.policy import ModelPolicy, build_model, load_model
from hiwm.tasks.pusht.env import PushTEnv


def measure(policy: ModelPolicy, observations: list[dict], queries: int, warmup: int = 10) -> dict:
    times = []
    for i in tqdm(range(warmup + queries), desc=policy.model.backbone_name, leave=False):
        obs = observations[i % len(observations)]
        start = time.perf_counter()
        chunk = policy.act(obs)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    t = np.asarray(times)
    return {
        "backbone": policy.model.backbone_name,
        "source": policy.source or "default config, untrained",
        "params_m": round(sum(p.numel() for p in policy.model.parameters()) / 1e6, 3),
        "chunk_rows": int(chunk.shape[0]),
        "ms_p50": round(float(np.percentile(t, 50)), 2),
        "ms_p99": round(float(np.percentile(t, 99)), 2),
        "ms_mean": round(float(t.mean()), 2),
        "queries": queries,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="*", default=["diffusion", "act"])
    parser.add_argument("--checkpoint", nargs="*", default=[], help="checkpoint folders to time instead/as well")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    env = PushTEnv(96)
    obs = env.reset(seed=0)
    observations = []
    for k in range(20):  # real frames of an episode, the agent moving
        observations.append({"image": obs.image, "state": obs.agent_pos})
        obs = env.step(np.array([256 + 100 * np.cos(k / 3), 256 + 100 * np.sin(k / 3)]))
    policies = [ModelPolicy(build_model(b)) for b in args.backbones]
    policies += [ModelPolicy(load_model(c), source=c) for c in args.checkpoint]
    results = [measure(p, observations, args.queries) for p in policies]
    print(json.dumps({"bench": "policy_latency", "device": "cpu", "threads": args.threads, "results": results}))


if __name__ == "__main__":
    main()
