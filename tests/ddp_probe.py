"""A training process that a test tampers with (tests/test_distributed.py):
`python tests/ddp_probe.py MODE ARGS...` runs `python -m idream ARGS...` where

- MODE die: the process ends at its second optimizer step as a crash would (exit 3, no cleanup);
- MODE grads: after the first backward, rank 0 saves the gradients (averaged over the ranks by
  then) to $IDREAM_PROBE_OUT, and every process stops.
"""

import os
import sys

import torch

from idream import cli

calls = []


def die(params, *args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        os._exit(3)
    return clip(params, *args, **kwargs)


def save_grads(params, *args, **kwargs):
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save([p.grad.clone() for p in params], os.environ["IDREAM_PROBE_OUT"])
    raise SystemExit(0)


if __name__ == "__main__":
    mode, argv = sys.argv[1], sys.argv[2:]
    clip = torch.nn.utils.clip_grad_norm_
    torch.nn.utils.clip_grad_norm_ = {"die": die, "grads": save_grads}[mode]
    sys.exit(cli.main(argv))
