"""The whole DreamGen loop on ToyWorld, stage by stage, resumable: what `dreamgen demo` and
`dreamgen experiment` run.

    real demos -> (prior videos of another arm) -> world model -> dreams from new first frames
    -> IDM trained on the real demos -> sim-replay judge + filter -> neural trajectories (LeRobot)
    -> policies (real-only / real+neural / neural-only, seeds, scaling) -> closed-loop eval -> report

Stages meet only through their public functions and on-disk outputs. Every step writes into its
own folder under `out/` and leaves a `.done` marker; a rerun skips finished steps and finished
items inside a step (generate, extract and eval are resumable on their own).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from dreamgen.errors import DreamgenError
from dreamgen.experiment.config import STEPS, PipelineConfig
from dreamgen.experiment.results import dream_folder, write_experiment_report
from dreamgen.io import atomic_write_text
from dreamgen.presets import load_preset


class Pipeline:
    """The experiment's steps (`STEPS`) as methods `step_<name>`, run in order by `run`."""

    def __init__(self, cfg: PipelineConfig, out: str | Path, echo=print, runs: list[str] | None = None):
        """`runs` restricts the policies and eval steps to these policy runs (e.g. to train them in
        parallel processes); names as in `policy_runs()`, e.g. real_only_s0, scale_50_s0."""
        self.cfg, self.out, self.echo, self.only_runs = cfg, Path(out), echo, runs
        self.out.mkdir(parents=True, exist_ok=True)
        self.timings: dict[str, float] = self._read_json(self.out / "timings.json") or {}

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _read_json(path: Path) -> Any:
        return json.loads(path.read_text()) if path.is_file() else None

    @staticmethod
    def _write_json(path: Path, data: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(data, indent=2, default=str))  # several processes may share the folder

    def _done(self, step: str) -> bool:
        return (self.out / ".done" / step).is_file()

    def _mark(self, step: str, seconds: float) -> None:
        (self.out / ".done").mkdir(exist_ok=True)
        (self.out / ".done" / step).write_text(f"{seconds:.1f}\n")
        self.timings[step] = round(seconds, 1)
        self._write_json(self.out / "timings.json", self.timings)

    def _settings(self) -> dict[str, Any]:
        """What decides the results: the config, and the content of the presets it names by name (a preset
        edited between runs changes the results as much as the config does)."""
        import hashlib

        from dreamgen.jobs import dotted
        from dreamgen.presets import find_preset

        named = {"worldmodel": self.cfg.wm.preset, "idm": self.cfg.idm.model_config, "policy": self.cfg.policy.preset}
        presets = {}
        for kind, name in named.items():
            path = find_preset(kind, name) if name else None
            presets[f"{kind}/{name}"] = hashlib.sha1(path.read_bytes()).hexdigest()[:12] if path else None
        return {**dotted(asdict(self.cfg), "config."), **{f"presets.{k}": v for k, v in presets.items()}}

    def run(self, steps: list[str] | None = None, overwrite: bool = False) -> None:
        """Run the steps in order; finished steps are reused only when made with these settings (the resume
        rule: other settings are refused, naming the first difference, unless `overwrite` starts fresh)."""
        from dreamgen.jobs import check_job

        def clear() -> None:  # --overwrite: OUT is this runner's own folder; every step starts again
            shutil.rmtree(self.out, ignore_errors=True)
            self.out.mkdir(parents=True)
            self.timings = {}

        check_job(self.out, "experiment", self._settings(), overwrite=overwrite, clear=clear,
                  has_results=(self.out / ".done").is_dir() and any((self.out / ".done").iterdir()))
        self._write_json(self.out / "config.json", asdict(self.cfg))
        todo = steps or STEPS
        for step in todo:
            if step not in STEPS:
                raise DreamgenError(f"unknown step {step!r}; steps: {', '.join(STEPS)}")
        for i, step in enumerate(STEPS):
            if step not in todo:
                continue
            if self._done(step) and step != "report":
                self.echo(f"[{i + 1}/{len(STEPS)}] {step}: done already ({self.out})")
                continue
            self.echo(f"[{i + 1}/{len(STEPS)}] {step} ...")
            t0 = time.time()
            where = getattr(self, f"step_{step}")()
            if self.only_runs is None or step not in ("policies", "eval"):  # a subset does not finish the step
                self._mark(step, time.time() - t0)
            self.echo(f"[{i + 1}/{len(STEPS)}] {step}: finished in {time.time() - t0:.0f}s -> {where}")

    # -- paths -----------------------------------------------------------------------------
    @property
    def real_dataset(self) -> Path:
        return Path(self.cfg.real.dataset) if self.cfg.real.dataset else self.out / "real"

    def dream_dir(self, name: str) -> Path:
        return dream_folder(self.out, name)

    def neural_dir(self, name: str, kind: str) -> Path:
        return self.out / "neural" / f"{name}_{kind}"

    # -- 1. real demonstrations -------------------------------------------------------------
    def step_real(self) -> Path:
        from dreamgen.data import open_dataset

        if self.cfg.real.dataset:
            ds = open_dataset(self.real_dataset)  # validates it
            self.echo(f"  using {self.real_dataset}: {ds.num_episodes} episodes, {ds.num_frames} frames")
            return self.real_dataset
        return self._collect(self.real_dataset, self.cfg.real.behaviors, self.cfg.real.envs,
                             self.cfg.real.episodes, self.cfg.real.seed, "default")

    def _collect(self, out: Path, behaviors, envs, episodes, seed, arm_style) -> Path:
        from dreamgen.toyworld.collect import CollectConfig, collect

        if out.exists():
            return out
        collect(CollectConfig(out=str(out), behaviors=list(behaviors), envs=list(envs), episodes=episodes,
                              seed=seed, image_size=self.cfg.image_size, arm_style=arm_style))
        return out

    # -- 2. prior videos (another arm) ------------------------------------------------------
    def step_prior(self) -> Path | str:
        from dreamgen.toyworld.scene import ENVIRONMENTS
        from dreamgen.toyworld.tasks import BEHAVIORS

        p = self.cfg.prior
        if not p.enabled:
            return "skipped (prior.enabled is false)"
        return self._collect(self.out / "prior", p.behaviors or list(BEHAVIORS), p.envs or list(ENVIRONMENTS),
                             p.episodes, p.seed, p.arm_style)

    # -- 3. world model ---------------------------------------------------------------------
    def step_world_model(self) -> Path:
        from dreamgen.worldmodel import FinetuneConfig, finetune_world_model

        w = self.cfg.wm
        base = Path(w.pretrained) if w.pretrained else None
        common = dict(preset=w.preset, embodiment="toyworld", batch_size=w.batch_size, device=w.device,
                      preset_overrides=dict(w.preset_overrides), save_every=max(50, w.scratch_steps // 4))
        if base is None and self.cfg.prior.enabled:
            prior_model = self.out / "wm_prior"
            self.echo(f"  pretraining from scratch on action-free {self.cfg.prior.arm_style!r}-arm videos -> {prior_model}")
            finetune_world_model(FinetuneConfig(
                data=str(self.out / "prior"), output_dir=str(prior_model), mode="full", init="scratch",
                steps=w.scratch_steps, vae_steps=w.scratch_vae_steps, lr=w.lr, resume=True, **common))
            base = prior_model
        model = self.out / "wm"
        if base is not None and w.finetune_steps == 0:
            self.echo(f"  using {base} as is (wm.finetune_steps is 0)")
            copy_tree(base, model)
            return model
        if base is None:
            self.echo(f"  no pretrained model: training from scratch on the real demos -> {model}")
            finetune_world_model(FinetuneConfig(
                data=str(self.real_dataset), output_dir=str(model), mode="full", init="scratch",
                steps=w.scratch_steps, vae_steps=w.scratch_vae_steps, lr=w.lr, resume=True, **common))
        else:
            self.echo(f"  {w.finetune_mode} fine-tuning {base} on the real demos -> {model}")
            finetune_world_model(FinetuneConfig(
                data=str(self.real_dataset), output_dir=str(model), mode=w.finetune_mode, init="pretrained",
                pretrained=str(base), steps=w.finetune_steps, lr=w.lr, resume=True, **common))
        return model

    # -- 4. dreams from new first frames ----------------------------------------------------
    def step_dreams(self) -> Path:
        from PIL import Image

        from dreamgen.toyworld.env import render_initial_frame
        from dreamgen.worldmodel import GenerateConfig, generate_videos

        w = self.cfg.wm
        for d in self.cfg.dreams:
            inputs = self.out / "dream_inputs" / d.name
            manifest_path = inputs / "manifest.json"
            if not manifest_path.is_file():
                inputs.mkdir(parents=True, exist_ok=True)
                items = []
                cells = [(b, e) for b in d.behaviors for e in d.envs]
                for i in range(d.count):
                    behavior, env = cells[i % len(cells)]
                    seed = d.seed + i
                    frame, instruction = render_initial_frame(behavior, env, seed, self.cfg.image_size)
                    png = inputs / f"{i:05d}.png"
                    Image.fromarray(frame).save(png)
                    items.append({"index": i, "image": png.name, "instruction": instruction,
                                  "behavior": behavior, "env": env, "seed": seed})
                self._write_json(inputs / "inputs.json", [{"image": it["image"], "instruction": it["instruction"]}
                                                          for it in items])
                self._write_json(manifest_path, items)
            self.echo(f"  dreaming {d.count} videos for {d.name!r} ({', '.join(d.behaviors)} in {', '.join(d.envs)})")
            generate_videos(GenerateConfig(model=str(self.out / "wm"), inputs=str(inputs / "inputs.json"),
                                           output_dir=str(self.dream_dir(d.name)), seed=d.seed,
                                           num_steps=w.num_steps, guidance=w.guidance, device=w.device))
        return self.out / "dreams"

    # -- 5. IDM on the real demos -----------------------------------------------------------
    def step_idm(self) -> Path:
        from dreamgen.idm import EvalConfig, IDMTrainConfig, evaluate_idm, train_idm
        from dreamgen.idm.evaluate import replay_success

        i = self.cfg.idm
        out = self.out / "idm"
        model_cfg: Any = i.model_config
        if i.model_overrides:
            from dreamgen.idm.configuration_idm import resolve_model_config

            model_cfg = {**resolve_model_config(i.model_config), **i.model_overrides}
        ckpt = train_idm(IDMTrainConfig(dataset_path=str(self.real_dataset), output_dir=str(out), embodiment="toyworld",
                                        model_config=model_cfg, max_steps=i.steps, batch_size=i.batch_size,
                                        save_steps=max(50, i.steps // 2), device=i.device, resume=True))
        metrics = evaluate_idm(EvalConfig(checkpoint=str(ckpt), device=i.device))
        metrics["checkpoint"] = str(ckpt)
        metrics["replay"] = replay_success(str(ckpt), str(self.real_dataset), device=i.device)
        self._write_json(out / "eval.json", metrics)
        r = metrics["replay"]
        self.echo(f"  IDM held-out action MSE {metrics['idm_mse']:.4f} vs predict-the-mean {metrics['baseline_mse']:.4f}; "
                  f"open-loop replay of its labels {r['idm_replay_success']:.0%} (expert's own actions "
                  f"{r['expert_replay_success']:.0%}) on {r['episodes']} held-out episodes")
        return out

    # -- 6. judge + filter ------------------------------------------------------------------
    def step_judge(self) -> Path | str:
        if not self.cfg.filter.enabled:
            return "skipped (filter.enabled is false)"
        from dreamgen.experiment.judges import IDMLabeller, sim_replay_judge_fn
        from dreamgenbench import filter_dreams, score_videos
        from dreamgenbench.judges.python_callable import PythonCallableJudge

        labeller = IDMLabeller(self._idm_checkpoint(), self.cfg.idm.device)
        for d in self.cfg.dreams:
            manifest = {it["index"]: it for it in self._read_json(self.out / "dream_inputs" / d.name / "manifest.json")}
            judge = PythonCallableJudge(sim_replay_judge_fn(labeller, manifest, self.cfg.image_size),
                                        name="toyworld-sim-replay")
            csv_path = self.out / "scores" / f"{d.name}.csv"
            csv_path.parent.mkdir(parents=True, exist_ok=True)
            summary = score_videos(self.dream_dir(d.name), judge, task="if", output_csv=csv_path)
            self.echo(f"  {d.name}: sim-replay pass rate {summary.score:.2f} over {summary.n} dreams")
            filtered = self.out / "filtered" / d.name
            if not filtered.exists():
                filter_dreams(csv_path, filtered, min_if=1)
        return self.out / "scores"

    def _idm_checkpoint(self) -> Path:
        ev = self._read_json(self.out / "idm" / "eval.json")
        if not ev:
            raise DreamgenError(f"{self.out / 'idm'}: no trained IDM; run the idm step first")
        return Path(ev["checkpoint"])

    # -- 7. neural trajectories -------------------------------------------------------------
    def step_neural(self) -> Path:
        from dreamgen.idm import ExtractConfig, convert_dreams, extract_actions

        kinds = ["raw"] + (["filtered"] if self.cfg.filter.enabled else [])
        ckpt = self._idm_checkpoint()
        for d in self.cfg.dreams:
            for kind in kinds:
                src = self.dream_dir(d.name) if kind == "raw" else self.out / "filtered" / d.name
                dst = self.neural_dir(d.name, kind)
                if dst.exists():
                    continue
                if not any(src.glob("*.mp4")):
                    self.echo(f"  {d.name}/{kind}: no dreams passed; no dataset")
                    continue
                by_instruction = self.out / "converted" / f"{d.name}_{kind}"
                if not by_instruction.exists():
                    convert_dreams(src, by_instruction)
                labelled = dst.with_name(dst.name + ".actions")
                if not labelled.exists():
                    res = extract_actions(ExtractConfig(checkpoint=str(ckpt), videos=str(by_instruction),
                                                        out=str(labelled), device=self.cfg.idm.device,
                                                        embodiment="toyworld"))
                    self.echo(f"  {d.name}/{kind}: {len(res.labelled)} trajectories labelled, {len(res.failed)} failed")
                n = _add_integrated_state(labelled, dst)
                self.echo(f"  {d.name}/{kind}: {dst} ({n} trajectories, state integrated from the labels)")
        return self.out / "neural"

    def neural_datasets(self, kind: str | None = None) -> list[Path]:
        kind = kind or self.cfg.policy.neural
        return [p for d in self.cfg.dreams if (p := self.neural_dir(d.name, kind)).is_dir()]

    # -- 8. policies ------------------------------------------------------------------------
    def policy_runs(self) -> list[tuple[str, int, list[tuple[Path, float]]]]:
        """(name, seed, [(dataset, weight)]) for every policy to train."""
        p = self.cfg.policy
        runs = []
        for variant in p.variants:
            kind = variant.rsplit("_", 1)[1] if variant.endswith(("_raw", "_filtered")) else p.neural
            neural = self.neural_datasets(kind)
            for seed in p.seeds:
                if variant == "real_only":
                    mix = [(self.real_dataset, 1.0)]
                elif not neural:
                    self.echo(f"  {variant}: no neural datasets ({kind}); skipped")
                    continue
                else:
                    weights = _split_weight(neural, p.neural_weight)
                    mix = ([(self.real_dataset, 1.0)] if variant.startswith("real_neural") else []) + weights
                runs.append((variant, seed, mix))
        for n in self.cfg.scaling:
            if n == 0 and "real_only" in p.variants:
                continue  # the curve's N=0 point is real_only (seed seeds[0]): the same training, not run twice
            if self.only_runs is not None and f"scale_{n}_s{p.seeds[0]}" not in self.only_runs:
                continue
            sub = self._neural_subset(n)
            mix = [(self.real_dataset, 1.0)] + ([(sub, p.neural_weight)] if sub else [])
            runs.append((f"scale_{n}", p.seeds[0], mix))
        if self.only_runs is not None:
            runs = [r for r in runs if f"{r[0]}_s{r[1]}" in self.only_runs]
        return runs

    def _neural_subset(self, n: int) -> Path | None:
        """The first n neural trajectories (round-robin over dream sets), as one dataset."""
        if n == 0:
            return None
        out = self.out / "neural_subsets" / f"n{n}"
        if out.exists():
            return out
        from dreamgen.data import DatasetWriter, open_dataset
        from dreamgen.embodiments import get_embodiment

        sources = [open_dataset(p) for p in self.neural_datasets()]
        order = [(s, k) for k in range(max((s.num_episodes for s in sources), default=0))
                 for s in range(len(sources)) if k < sources[s].num_episodes]
        if len(order) < n:
            raise DreamgenError(f"scaling asks for {n} neural trajectories but only {len(order)} exist; "
                                "dream more (dreams[].count) or lower the scaling counts")
        emb = get_embodiment("toyworld")
        with DatasetWriter(out, emb, provenance={"subset_of": [str(s.root) for s in sources], "n": n}) as w:
            for s, k in order[:n]:
                ep = sources[s].episode(k)
                w.add_episode(ep.frames(), ep.action, ep.task, state=ep.state)
        return out

    def step_policies(self) -> Path:
        from dreamgen.policy.finetune import PolicyTrainConfig, finetune_policy
        from dreamgen.policy.mixing import DatasetSpec

        p = self.cfg.policy
        preset = _policy_preset(p.preset)
        for name, seed, mix in self.policy_runs():
            out = self.out / "policies" / f"{name}_s{seed}"
            kwargs = {k: v for k, v in preset.items() if k in {f.name for f in fields(PolicyTrainConfig)}}
            kwargs.update(datasets=[DatasetSpec(Path(d), float(w)) for d, w in mix], output_dir=out, seed=seed,
                          embodiment="toyworld", use_state=p.use_state,
                          lerobot_args=list(preset.get("lerobot_args", [])) + list(p.lerobot_args))
            for k in ("steps", "batch_size", "device"):
                if getattr(p, k) is not None:
                    kwargs[k] = getattr(p, k)
            done = _checkpoint_step(out)
            if done is not None and done >= int(kwargs.get("steps", 0)):
                continue  # finished earlier
            if done is None and out.exists():
                shutil.rmtree(out)  # died before its first checkpoint: nothing to resume
            kwargs["resume"] = done is not None
            self.echo(f"  {'resuming' if done else 'training'} {name} (seed {seed}) on "
                      + ", ".join(f"{d.name}:{w:g}" for d, w in mix))
            kwargs["save_freq"] = min(int(kwargs.get("save_freq", 10**9)), int(kwargs.get("steps", 10**9)))
            finetune_policy(PolicyTrainConfig(**kwargs))
        return self.out / "policies"

    # -- 9. closed-loop evaluation ----------------------------------------------------------
    def eval_cells(self) -> list[tuple[str, str]]:
        if self.cfg.eval.cells:
            return [tuple(c) for c in self.cfg.eval.cells]
        train_b, train_e = self.cfg.real.behaviors[0], self.cfg.real.envs[0]
        cells = [(train_b, train_e)]
        for d in self.cfg.dreams:
            cells += [(b, train_e) for b in d.behaviors] + [(train_b, e) for e in d.envs]
        return list(dict.fromkeys(cells))

    def step_eval(self) -> Path:
        from dreamgen.policy.eval import eval_policy

        ev = self.cfg.eval
        for name, seed, _ in self.policy_runs():
            ckpt = self.out / "policies" / f"{name}_s{seed}"
            for b, e in self.eval_cells():
                out = self.out / "eval" / f"{name}_s{seed}" / f"{b}__{e}"
                if (out / "results.json").is_file():
                    continue
                eval_policy(ckpt, out_dir=out, device=ev.device, behaviors=[b], envs=[e], episodes=ev.episodes,
                            seed=ev.seed, save_videos=ev.save_videos)
        return self.out / "eval"

    # -- 10. report -------------------------------------------------------------------------
    def step_report(self) -> Path:
        return write_experiment_report(self.cfg, self.out, self.timings)


# ----------------------------------------------------------------------------------------------
# helpers of the steps


def _add_integrated_state(src: Path, dst: Path) -> int:
    """Copy an idm-extract dataset, adding the proprio state its action labels imply (ToyWorld kinematics),
    so that policies that read state can train on dreams too."""
    from dreamgen.data import DatasetWriter, open_dataset
    from dreamgen.embodiments import get_embodiment
    from dreamgen.toyworld.replay import integrate_state

    ds = open_dataset(src)
    prov = json.loads((src / "meta" / "dreamgen_provenance.json").read_text())
    prov["observation.state"] = "integrated from the IDM action labels (dreamgen.toyworld.replay.integrate_state)"
    with DatasetWriter(dst, get_embodiment("toyworld"), provenance=prov) as w:
        for ep in ds.episodes():
            w.add_episode(ep.frames(), ep.action, ep.task, state=integrate_state(ep.action))
    return ds.num_episodes


def _split_weight(datasets: list[Path], total: float) -> list[tuple[Path, float]]:
    """Share `total` over datasets in proportion to their episode counts."""
    from dreamgen.data import read_info

    counts = [max(1, int(read_info(p).get("total_episodes", 1))) for p in datasets]
    return [(p, total * c / sum(counts)) for p, c in zip(datasets, counts, strict=True)]


def _checkpoint_step(run: Path) -> int | None:
    """The step of a policy run's last checkpoint (LeRobot's checkpoints/last -> <step>), or None."""
    last = run / "checkpoints" / "last"
    try:
        return int(last.resolve().name) if last.exists() else None
    except ValueError:
        return None


def _policy_preset(name: str) -> dict[str, Any]:
    return load_preset("policy", name, "finetune-policy settings")


def copy_tree(src: Path, dst: Path) -> None:
    if not dst.exists():
        shutil.copytree(src, dst)
