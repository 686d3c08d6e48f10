"""The contract test's driver, run with the contract venv's Python (upstream TRIBE v2 installed).

    python driver.py checkpoint OUT_DIR
        config.yaml from upstream's ``tribev2/grids/defaults.py`` (as the released checkpoint's
        config is: the training config, which ``from_pretrained`` then edits) and ``best.ckpt``
        with random weights of upstream's FmriEncoder built from it, with the real extractors'
        feature sizes (``model_build_args`` + ``state_dict``, as upstream's Lightning module saves).

    python driver.py encode REPORT.json -- BREACHLAB_ARGS...
        installs the weight-free stand-ins (:mod:`standins`), then runs the real CLI,
        ``breachlab brain encode ... --backend tribev2``, in this process; writes extractor
        loads, wall seconds and the exit code to REPORT.json.

Stand-in speech: where ``espeak-ng`` is missing, the tone engine of :mod:`standin_tts`
replaces it (recorded in the run's manifest as ``standin-tone``).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

#: (layer groups after upstream's "group_mean" of layers [0.5, 0.75, 1.0], hidden size)
FEATURE_DIMS = {"text": (2, 3072), "audio": (2, 1024), "video": (2, 1408)}
N_VERTICES = 20484


def _defaults(tmp: Path) -> dict:
    """upstream's default_config (its module needs DATAPATH/SAVEPATH folders to exist)."""
    os.environ.setdefault("DATAPATH", str(tmp / "data"))
    os.environ.setdefault("SAVEPATH", str(tmp / "save"))
    from tribev2.grids.defaults import default_config

    return copy.deepcopy(default_config)


def build_checkpoint(out: Path, seed: int = 0) -> Path:
    import pydantic
    import torch
    import tribev2.model  # noqa: F401  (registers FmriEncoder)
    import yaml
    from neuraltrain.models import BaseModelConfig

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _defaults(Path(tmp))
    cfg["infra"]["folder"] = str(out)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    model_cfg = pydantic.TypeAdapter(BaseModelConfig).validate_python(copy.deepcopy(cfg["brain_model_config"]))
    # from_pretrained sets average_subjects, which gives the predictor one (averaged) subject
    model_cfg.subject_layers.average_subjects = True
    model_cfg.subject_layers.n_subjects = 0
    torch.manual_seed(seed)
    build_args = {"feature_dims": FEATURE_DIMS, "n_outputs": N_VERTICES,
                  "n_output_timesteps": cfg["data"]["duration_trs"]}
    model = model_cfg.build(**build_args)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"model_build_args": build_args, "state_dict": state}, out / "best.ckpt")
    return out


def _standin_tts() -> str:
    if shutil.which("espeak-ng"):
        return "espeak-ng"
    from standin_tts import ToneEngine

    from breachlab.brain import tts

    tts.get_engine = lambda name, **kw: ToneEngine()
    return "standin-tone"


def encode(report: Path, args: list[str]) -> int:
    import standins

    standins.install(video=not os.environ.get("BREACHLAB_CONTRACT_REAL_VIDEO"))
    speech = _standin_tts()
    from breachlab import cli

    t0, c0 = time.perf_counter(), time.process_time()
    code = 0
    sys.argv = ["breachlab", *args]
    try:
        cli.main()  # the console script's entry point: sys.exit(code)
    except SystemExit as exc:
        code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except BaseException:
        code = 1
        raise
    finally:
        report.write_text(json.dumps({"exit_code": code, "seconds": round(time.perf_counter() - t0, 2),
                                      "cpu_s": round(time.process_time() - c0, 2),
                                      "loads": standins.LOADS, "speech": speech, "args": args}, indent=2))
    return code


def main(argv: list[str]) -> int:
    if argv[:1] == ["checkpoint"]:
        build_checkpoint(Path(argv[1]))
        return 0
    if argv[:1] == ["encode"]:
        sep = argv.index("--")
        return encode(Path(argv[1]), argv[sep + 1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
