"""`transferbench probe`: per-layer probes beside the measured transfer curve."""

from __future__ import annotations

import argparse
from pathlib import Path

from transferbench.cli.types import device


EXAMPLES = """\
examples:
  transferbench probe jobs/demo
  transferbench probe jobs/yosinski2014 --device cuda --out results/figures
"""


def add(commands, formatter) -> None:
    probe = commands.add_parser("probe", epilog=EXAMPLES, help="per-layer probes (linear probe, CKA, LogME, LEEP) beside the measured curve",
                                formatter_class=formatter,
                                description="For every split and seed of a study whose baseA and baseB finished healthy: "
                                            "per layer 1..7, on side B's images, the top-1 of a linear probe on baseA's "
                                            "features (ridge penalty chosen by cross-validation), their LogME, the linear "
                                            "CKA of baseA's and baseB's features (biased and debiased); LEEP of baseA's "
                                            "classifier; and two nulls: the linear probe on a random network, and depth "
                                            "alone (-n). Kendall's tau of each with the measured AnB curve and with "
                                            "AnB - BnB, per split and seed (exact permutation p), and over them with a "
                                            "t-interval and the difference from depth's: a measure predicts the curve "
                                            "beyond depth only where that difference is above 0. Forward passes only. "
                                            "Writes <study>-probes.csv, <study>-probe-agreement.csv and <study>-probes.png. "
                                            "The recipe: transferbench/probe/run.py.")
    probe.add_argument("study", type=Path, metavar="jobs/STUDY")
    probe.add_argument("--out", type=Path, default=Path("results/figures"), metavar="DIR",
                       help="where the CSV and figure go (default: results/figures)")
    probe.add_argument("--device", type=device, help="cpu or cuda (default: cuda when one is visible, as for bench)")
    probe.add_argument("--metric", default="top1_mean_best10", choices=("top1_mean_best10", "top1_final", "top1_holdout"),
                       help="each network's value on the measured curve, as for plot (default: the paper's mean of the "
                            "10 best evaluations; top1_final where a recipe has few evaluations, as the demo's)")
    probe.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import numpy as np

    from transferbench.probe.run import agreement_lines, probe_study

    result = probe_study(args.study, args.out, args.device, metric=args.metric)
    print(f"probed in {result['seconds']:.0f} s ({100 * result['seconds'] / max(1.0, result['training_seconds']):.1f}% "
          f"of the {result['training_seconds']:.0f} s its networks took to train): {result['csv']}, "
          f"{result['agreement_csv']}")
    for name, part in result["parts"].items():
        print(f"{name}: {part['figure']}; Kendall tau of each predictor with the measured curve (absolute: AnB; "
              "relative: AnB - BnB), beside the nulls (random_probe: a random network; depth: -n)")
        for line in agreement_lines(part["agreement"]):
            print(line)
        print(f"  leep          of baseA's classifier on side B: {np.mean(part['leep']):+.3f} (mean over "
              f"{len(part['leep'])} splits/seeds; one number per network, so no curve)")
