"""Launch the iDream Gradio demo (what the Dockerfile, and so the Hugging Face Space, runs).

Checkpoint: $IDREAM_CHECKPOINT (default checkpoints/ml-100k); address: GRADIO_SERVER_NAME /
GRADIO_SERVER_PORT (default 127.0.0.1:7860).
"""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no model-loading bar per request

from demo.app import build_app, launch_kwargs  # noqa: E402
from idream.serving.checkpoint import CheckpointError  # noqa: E402

try:
    demo = build_app(os.environ.get("IDREAM_CHECKPOINT", "checkpoints/ml-100k"))
except CheckpointError as e:
    sys.exit(f"error: {e}")

if __name__ == "__main__":
    demo.launch(**launch_kwargs())
