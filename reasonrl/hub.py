"""Push a run's final adapter (or model) to the Hugging Face hub, with a model card.

``reasonrl push OUTPUT_DIR --repo-id user/name`` stages what it uploads in a folder
(the final weights, tokenizer, a generated README.md model card, the reward curve)
and uploads that folder with ``HfApi.upload_folder``. ``--dry-run`` writes the staged
folder and stops. The token comes from ``--token``, ``HF_TOKEN`` or the
huggingface_hub login; it is passed to the API only, never printed or written.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import yaml

from reasonrl.models.embedded import EMBEDDED_NAME, HUB_ID

log = logging.getLogger(__name__)
PUBLIC_NAMES = {EMBEDDED_NAME: HUB_ID}


def public_base_model(name: str) -> str | None:
    """The hub id a reader can use for the recipe's base model (None for local-only models)."""
    if name in PUBLIC_NAMES:
        return PUBLIC_NAMES[name]
    if name.count("/") == 1 and not Path(name).exists():
        return name
    return None


def _summary(output_dir: Path) -> dict:
    path = output_dir / "metrics.jsonl"
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        return {}
    window = max(1, len(rows) // 5)
    out = {"steps": rows[-1]["step"]}
    for key in [k for k in rows[0] if k.startswith("reward/") and k.endswith("mean")]:
        out[key] = {
            "start": sum(r[key] for r in rows[:window]) / window,
            "end": sum(r[key] for r in rows[-window:]) / window,
        }
    return out


def model_card(output_dir: Path, repo_id: str) -> str:
    recipe = yaml.safe_load((output_dir / "recipe.yaml").read_text())
    base = public_base_model(recipe["model"]["name"])
    algorithm = recipe.get("algorithm", "grpo")
    lora = recipe["model"].get("lora") is not None
    meta = {
        "library_name": "peft" if lora else "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["reasonrl", algorithm, "reinforcement-learning"] + (["lora"] if lora else []),
    }
    if base:
        meta["base_model"] = base
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False).strip(),
        "---",
        "",
        f"# {repo_id.split('/')[-1]}",
        "",
    ]
    lines.append(
        f"A {'LoRA adapter' if lora else 'model'} trained with [reasonrl](https://github.com/reasonrl) using "
        f"{algorithm.upper()} on `{recipe['data']['source']}` (split `{recipe['data']['split']}`)"
        + (f", on top of `{base}`." if base else ".")
    )
    rewards = recipe.get("rewards", [])
    if rewards:
        lines += ["", "## Rewards", "", "| reward | weight | options |", "| --- | --- | --- |"]
        for r in rewards:
            options = {k: v for k, v in r.items() if k not in ("name", "weight")}
            lines.append(
                f"| {r['name']} | {r.get('weight', 1.0)} | {json.dumps(options) if options else ''} |"
            )
    summary = _summary(output_dir)
    if summary:
        lines += [
            "",
            "## Training",
            "",
            f"{summary['steps']} steps. Mean reward, first vs last fifth of the run:",
            "",
            "| metric | start | end |",
            "| --- | --- | --- |",
        ]
        for key, v in summary.items():
            if isinstance(v, dict):
                lines.append(f"| {key} | {v['start']:.3f} | {v['end']:.3f} |")
    evaluation = output_dir / "eval" / "summary.json"
    if evaluation.exists():
        results = json.loads(evaluation.read_text())
        lines += ["", "## Evaluation", "", "| task | metric | value | stderr |", "| --- | --- | --- | --- |"]
        for metric, v in results.get("metrics", {}).items():
            lines.append(
                f"| {results.get('task', '')} | {metric} | {v['value']:.4f} | {v.get('stderr', 0):.4f} |"
            )
    if (output_dir / "reward_curve.png").exists():
        lines += ["", "![reward curve](reward_curve.png)"]
    if lora and base:
        lines += [
            "",
            "## Use",
            "",
            "```python",
            "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f'base = AutoModelForCausalLM.from_pretrained("{base}")',
            f'model = PeftModel.from_pretrained(base, "{repo_id}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")',
            "```",
        ]
    lines += ["", "## Recipe", "", "```yaml", (output_dir / "recipe.yaml").read_text().strip(), "```", ""]
    return "\n".join(lines)


def stage(output_dir: str | Path, repo_id: str, destination: str | Path) -> Path:
    """Write the exact folder that would be uploaded."""
    output_dir, destination = Path(output_dir), Path(destination)
    final = output_dir / "final"
    if not final.is_dir():
        raise FileNotFoundError(f"{final} does not exist: train a recipe to completion first")
    if not (output_dir / "recipe.yaml").exists():
        raise FileNotFoundError(f"{output_dir / 'recipe.yaml'} is missing: is {output_dir} a reasonrl run?")
    if destination.exists():
        shutil.rmtree(destination)
    shutil.copytree(final, destination)
    adapter = destination / "adapter_config.json"
    if adapter.exists():  # it records the local cache folder; readers need the public name
        config = json.loads(adapter.read_text())
        recipe = yaml.safe_load((output_dir / "recipe.yaml").read_text())
        config["base_model_name_or_path"] = public_base_model(recipe["model"]["name"])
        adapter.write_text(json.dumps(config, indent=2))
    if (output_dir / "reward_curve.png").exists():
        shutil.copy(output_dir / "reward_curve.png", destination / "reward_curve.png")
    (destination / "README.md").write_text(model_card(output_dir, repo_id))
    return destination


def push(
    output_dir: str | Path,
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    endpoint: str | None = None,
    dry_run: str | Path | None = None,
) -> str:
    """Stage and upload; returns the commit URL (or the staged folder for a dry run)."""
    import tempfile

    if dry_run is not None:
        folder = stage(output_dir, repo_id, dry_run)
        log.info("dry run: the upload would be %s", folder)
        return str(folder)
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    with tempfile.TemporaryDirectory(prefix="reasonrl-push-") as tmp:
        folder = stage(output_dir, repo_id, Path(tmp) / "upload")
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=folder, repo_id=repo_id, commit_message="Upload from reasonrl")
    url = getattr(commit, "commit_url", None) or str(commit)
    log.info("pushed %s to %s", output_dir, repo_id)
    return url
