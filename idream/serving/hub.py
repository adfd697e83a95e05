"""Checkpoints on the Hugging Face Hub: `hf://owner/name[@revision]` wherever a checkpoint folder is
taken (Recommender.load, IDREAM_CHECKPOINT, --checkpoint). The folder's files are fetched with
huggingface_hub into its cache and then read, and checked part by part, as a local folder is;
`push` uploads a checkpoint folder with its model card."""

from __future__ import annotations

import re
from pathlib import Path

from idream.serving.checkpoint import CheckpointError, read_config

PREFIX = "hf://"
# The files of a checkpoint folder (docs/checkpoint-format.md); nothing else is fetched or pushed
# (not the training state of an unfinished run, not caches).
FILES = ["config.json", "model.safetensors", "transform.safetensors", "items.safetensors",
         "metrics.json", "umap.safetensors", "NOTES.md", "README.md"]
_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")


class HubError(CheckpointError):
    """The Hub cannot give (or take) a checkpoint: one line that says what to do."""


def is_hub(spec) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def parse(spec: str) -> tuple[str, str | None]:
    """'hf://owner/name@rev' -> ('owner/name', 'rev'); the revision is None where not given."""
    body = spec[len(PREFIX):] if is_hub(spec) else spec
    repo, _, rev = body.partition("@")
    if not _REPO.fullmatch(repo) or ".." in repo or repo.endswith((".", "-")):
        raise HubError(f"not a Hugging Face model id: {spec!r}; write hf://owner/name or "
                       "hf://owner/name@revision")
    if "@" in body and not (_REVISION.fullmatch(rev) and ".." not in rev):
        raise HubError(f"not a revision: {rev!r} in {spec!r}; after '@' comes a branch, tag or commit")
    return repo, rev or None


def local_path(spec) -> Path:
    """The folder to read a checkpoint from: a local path as given, an hf:// id fetched into the
    Hub's cache (only the checkpoint's files; from the cache alone when HF_HUB_OFFLINE=1)."""
    if not is_hub(spec):
        return Path(spec)
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    repo, rev = parse(spec)
    try:
        return Path(snapshot_download(repo, revision=rev, allow_patterns=FILES))
    except LocalEntryNotFoundError:  # not cached (or cached in part), and the Hub not reachable
        how = ("HF_HUB_OFFLINE=1 (the default of the command line and the app): set HF_HUB_OFFLINE=0 "
               "to download it"
               if constants.is_offline_mode() else "check the network and try again")
        raise HubError(f"{spec} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and the "
                       f"Hub cannot be reached; {how}") from None
    except (RepositoryNotFoundError, GatedRepoError):
        raise HubError(f"{spec}: no such model on the Hub, or it is private or gated and the "
                       "token (HF_TOKEN, `hf auth login`) may not read it") from None
    except RevisionNotFoundError:
        raise HubError(f"{spec}: the model has no revision {rev!r}") from None
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise HubError(f"{spec} cannot be fetched from the Hub ({_first_line(e)})") from None


def push(folder, repo: str, private: bool = False, message: str | None = None) -> str:
    """Upload a checkpoint folder's files (model card included) to the model repo `repo`
    (created if need be); returns the repo's address."""
    import httpx2
    from huggingface_hub import HfApi, constants, get_token

    folder = Path(folder)
    repo_id, rev = parse(repo)
    if rev is not None:
        raise HubError(f"push to a repo (owner/name), not to a revision: {repo!r}")
    if not folder.is_dir():
        raise HubError(f"no checkpoint folder at {folder}")
    read_config(folder)  # a checkpoint at all (CheckpointError says why not)
    missing = [f for f in ("model.safetensors", "transform.safetensors", "items.safetensors", "README.md")
               if not (folder / f).is_file()]
    if missing:
        raise HubError(f"{folder} lacks {', '.join(missing)}: push a whole checkpoint folder, with its "
                       "model card (`python -m idream train` writes both)")
    if constants.is_offline_mode():
        raise HubError("push needs the network, but HF_HUB_OFFLINE=1 (or TRANSFORMERS_OFFLINE=1) is "
                       "set: set it to 0")
    if not get_token():
        raise HubError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token that may write)")
    api = HfApi()
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(repo_id=repo_id, folder_path=folder, allow_patterns=FILES, repo_type="model",
                          commit_message=message or f"iDream checkpoint from {folder.name}")
    except (httpx2.HTTPError, OSError, ValueError) as e:  # the Hub's errors are httpx2 / OSError ones
        raise HubError(f"cannot push to {repo_id} ({_first_line(e)}); check the network and that the "
                       "token may write to it") from None
    return str(url)


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]

