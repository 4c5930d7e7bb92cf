"""One rank of the data-parallel calibration tests (tests/test_calibration_ddp.py), started by torchrun:

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_worker.py SPEC.json

It runs what ``hybridwam calibrate LOGS --scene double_pendulum --out OUT`` runs
(``run_calibrate_cli``, same defaults) with SPEC's arguments, plus a callback that records every
epoch this rank finished (``record``: JSON lines with the torchrun restart count) and, with
``kill: {"rank", "stage", "epoch"}``, kills this process with SIGKILL after that epoch in the first
attempt (a lost machine: no exception handler, no cleanup). At the end each rank writes what it
holds (identified parameters, neural baseline weights) to ``result`` + ``.rank<R>.json``.
``delay_restart: {"rank", "seconds"}`` holds that rank back when torchrun restarts it.
``settings`` are further calibrate settings, ``rank_settings[str(rank)]`` those of one rank only.
"""
import json
import os
import signal
import sys
import time


def main(spec_path: str) -> int:
    with open(spec_path) as f:
        spec = json.load(f)
    from hybridwam.calibration.cli import run_calibrate_cli

    rank = int(os.environ.get("RANK", "0"))
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    kill = spec.get("kill")

    def callback(info):
        with open(spec["record"], "a") as f:
            f.write(json.dumps({"rank": info["rank"], "world_size": info["world_size"], "restart": restart,
                                "attempt": spec.get("attempt", 0), "stage": info["stage"],
                                "epoch": info["epoch"]}) + "\n")
        if kill and restart == 0 and rank == kill["rank"] and (info["stage"], info["epoch"]) == (kill["stage"],
                                                                                              kill["epoch"]):
            os.kill(os.getpid(), signal.SIGKILL)

    delay = spec.get("delay_restart") or {}
    if restart > 0 and rank == delay.get("rank"):
        time.sleep(delay["seconds"])       # a slow restarted rank: the others must wait for it, not fail
    report = run_calibrate_cli(spec["logs"], "double_pendulum", spec["out"], epochs=spec["epochs"], val="1",
                               test="1", trajectory_offsets="qpos", resume=spec.get("resume", False),
                               progress=False, print_fn=None, callback=callback,
                               **{**spec.get("settings", {}), **spec.get("rank_settings", {}).get(str(rank), {})})
    with open(f"{spec['result']}.rank{rank}.json", "w") as f:
        json.dump({"identified": report.identified_params, "complete": report.complete,
                   "metrics": report.metrics,
                   "neural": {k: v.detach().cpu().double().reshape(-1).tolist()
                                for k, v in report.neural.state_dict().items()} if report.neural is not None
                   else None}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
