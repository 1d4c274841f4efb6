"""A pipeline family: the fine-tune's methods (finetune.methods) measured side by side.

The engine runs each member as its own stage; what happens around those stages lives here: each
member's stage key (adding a method must reuse the others; the default method keeps the key a
single-method task always had), the family's representative (chosen on the train side only,
decide.choose_method), the run folder keeping the chosen member's weights only, and one
report.json row per member. Pure but for deleting the weights of the members not chosen.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import catalogue, decide
from .spec import METHOD_FIELDS_DEFAULTS
from .stages import stage_key
from .usage import Usage

if TYPE_CHECKING:  # pragma: no cover
    from .spec import FinetuneSpec


def member_key(e: "catalogue.PipelineEntry", method: str, base: dict, ft: "FinetuneSpec") -> str:
    """One member's stage key: the entry's key sections (``base``, from the engine) without the list
    of methods, plus that method's own settings; the default method's is a single-method task's."""
    for k in METHOD_FIELDS_DEFAULTS:
        base["spec"]["finetune"].pop(k, None)
    own: dict[str, Any] = {} if method == e.default_method else {"method": method, "method_lr": ft.lr_for(method)}
    if method == e.default_method and method in ft.method_lr:
        own["method_lr"] = ft.lr_for(method)
    if method == "prompt_tuning":
        own.update(prompt_tuning_tokens=ft.prompt_tuning_tokens, prompt_tuning_init=ft.prompt_tuning_init)
    return stage_key(e.name, **base, **own)


def assemble(e: "catalogue.PipelineEntry", methods: list[str], results: dict[str, dict], out_dir: Path) -> dict:
    """The family's result: with one method, that method's (today's report); with several, the
    member with the lowest validation loss (train side only), the rule said in its notes, and
    the other members' weights removed from the run folder (a full fine-tune's are the model's
    size). ``results``: each member's stage result, by method."""
    from pipelines.methods import artifact_dir

    if len(methods) == 1:
        only = results[methods[0]]
        return only if methods[0] == e.default_method else {**only, "method": methods[0]}
    ok = {m: r for m, r in results.items() if r.get("status") == "ok"}
    chosen, rule = decide.choose_method({m: (r.get("details") or {}).get("final_val_loss") for m, r in ok.items()},
                                        methods)
    if chosen is None:  # none ran: the family failed if a member failed, else it was skipped
        failed = [m for m, r in results.items() if r.get("status") == "failed"]
        out = {"status": "failed" if failed else "skipped",
               "reason": "; ".join(f"{m}: {r.get('reason', '')}" for m, r in results.items())}
    else:
        out = {**results[chosen], "notes": [*results[chosen].get("notes", []), f"method {chosen}: {rule}"]}
    out.update(method=chosen, method_choice=rule)
    for art in e.artifacts:
        if chosen is None or art != artifact_dir(chosen):
            shutil.rmtree(out_dir / art, ignore_errors=True)
    if chosen and not (out_dir / artifact_dir(chosen)).exists():
        out["notes"].append(f"{chosen}'s trained weights are not in this run folder: its result was reused from a "
                            "run where another method was chosen (only the chosen one's are kept); "
                            "rerun with --fresh to train and keep them")
    return out


def member_row(e: "catalogue.PipelineEntry", method: str, r: dict, *, chosen: bool, reused: bool,
               judged: tuple | None) -> dict:
    """report.json pipelines.<family>.methods[]: one member judged (``judged``: decide.judge's
    verdict, CI, probability) and priced like a pipeline of its own, with measured vs estimated
    training time."""
    row: dict[str, Any] = {"method": method, "title": catalogue.title(e.name, method), "status": r["status"],
                           "chosen": chosen, "reused": reused}
    if r["status"] != "ok" or judged is None:
        return {**row, "reason": r.get("reason", "")}
    verdict, ci, prob = judged[:3]
    u, d, c, t = Usage.from_dict(r.get("usage")), r.get("details", {}), r.get("cost", {}), r.get("timings", {})
    row.update(
        score=r.get("score"), ci=[round(x, 6) for x in ci], verdict=verdict, probability=prob, n=r.get("n"),
        trainable_params=u.trainable_params, total_params=u.extra.get("total_params"),
        trainable_pct=u.extra.get("trainable_pct"), lr=u.extra.get("lr"), steps=u.extra.get("steps"),
        final_val_loss=d.get("final_val_loss"), final_train_loss=d.get("final_train_loss"),
        train_tokens=u.train_tokens_total, train_tokens_per_second=u.extra.get("tokens_per_second"),
        train_seconds=u.train_seconds, wall_seconds=t.get("total"),
        peak_memory_gb=u.peak_memory_gb, peak_memory_kind=u.extra.get("peak_memory_kind"),
        cpu_load_per_core=u.cpu_load_per_core, device=u.device_hardware,
        train_flops_rule="6·N·D" if method == "full" else "4·N·D",
        train_seconds_estimated=c.get("train_seconds_estimated_on_measured_device"),
        estimate_error_pct=c.get("estimate_error_pct"), measured_mfu=c.get("measured_mfu"),
        memory_gb_estimated=c.get("memory_gb"), train_seconds_estimated_target=c.get("train_seconds_estimated"),
        setup_usd=c.get("setup_usd"), usd_per_1k_requests=c.get("usd_per_1k_requests"),
    )
    return row
