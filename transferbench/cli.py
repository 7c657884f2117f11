"""The `transferbench` command: parses arguments, calls one function, turns UserError into one line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from transferbench import __version__
from transferbench.errors import UserError

DESCRIPTION = """\
transferbench measures how transferable each layer's features are in deep networks
(Yosinski et al. 2014) and extends the study with grown networks (Wang et al. 2017).

Subcommands:
  splits   make the class splits that define every task (random, stratified, natman, reduced)
  demo     the whole study on built-in synthetic data in minutes: plan, train, collect, plot
  plan     expand a study config (configs/*.toml) into every job and its dependencies
  pack     build a study's ImageNet pack ahead (submit builds it as the study's first job)
  submit   run a planned study on Slurm (arrays, afterok), on this machine, or in process
  status   what is planned, queued, running, done, failed (and why) in a study
  collect  gather a study's result records into results/<study>.csv
  import-caffe  read the authors' Caffe logs into the same CSV schema (results/yosinski2014.csv)
  import-weights  check a pretrained network's file (.caffemodel, torchvision AlexNet, CaffeNet state dict) layer by layer
  plot     the paper's figures and the lingering-boost table from results CSVs
  train    train one network of the study from a job spec (JSON) and write its result record
  probe    per-layer probes (linear probe, CKA, LogME, LEEP) beside the measured transfer curve
  bench    throughput and memory of the networks and the data path, next to a reference loop

The whole study:  transferbench plan yosinski2014 && transferbench submit jobs/yosinski2014
"""

BENCH_DESCRIPTION = """\
What a GPU-hour buys, measured on this machine's device (cuda when visible, else cpu):

  model  images/s and peak device memory of CaffeNet at 227 px and the small variant at
         32 px: full training, frozen layers 1..n (n = 3, 5, 7) and evaluation, on batches
         already on the device
  data   decode + augment alone: transferbench's path from JPEG files and from a uint8 pack,
         and the reference (DataLoader, PIL, RandomResizedCrop, flip, ToTensor, Normalize)
  fused  the seven AnB networks (n = 1..7) of one split at CaffeNet 227 px, one after another
         and fused (one batch for all, the shared frozen layers computed once), with the
         ratio the multiply-adds predict; on CUDA also with each network reading its batches
  data   on CUDA also: the uint8 pack held in GPU memory, and a compact JPEG pack decoded
         by nvJPEG
  train  CaffeNet at 227 px with each data path, and the reference loop of the PyTorch
         ImageNet example (fp32, NCHW), with the ratio of ours to it

On CUDA each row also gives TFLOP/s (multiply-adds counted per layer) and its share of the
device's ceiling, a bf16 matrix product measured first. --rows picks groups; --matrix adds
CaffeNet in fp32/bf16, NCHW/channels_last and compiled.

The JPEGs are generated (random 500x375 images) unless --images gives real ones.
Results are printed; --out also writes them as JSON.  See benchmarks/RESULTS.md.
"""

PLAN_DESCRIPTION = """\
Expand a study config into jobs/<study>/: plan.json (every job: key such as random0/A3B+/seed0,
condition, split, side, n, seed, dependencies, output folder, full spec) and summary.txt (jobs
per block and condition).  Base networks are planned once and shared by every job that copies
from them.  Re-planning an unchanged config writes nothing; a changed one lists the jobs that
were added, removed or changed (the outputs of changed jobs, and of every job that copies
from one, are moved aside).  If a changed job is still queued or running, plan stops and
writes nothing (--cancel-changed cancels it first).

Presets ship with transferbench and are given by name (`transferbench plan yosinski2014`;
`--list` describes them): yosinski2014 (the 170 networks the authors ran), yosinski2014-full
(every condition on every split, both directions), fashion-mnist, cifar100, demo,
developmental-fashion-mnist, developmental-synthetic(-seeds).  A ./configs/NAME.toml of your
own comes first; a path is used as it is.

Network patterns in a [[block]]: baseA, base (all classes), AnB, AnB+, AnA (selffer), RnB
(random-init frozen), AnB^k (preserved), with n over the block's n = [...].
Developmental networks (Growing a Brain), S over the block's units = [...]: A7B+DA, A7B+WA,
A7B+DWA, A7B+WWA with options -new/-fc7/-fc6 (fine-tuning scope), -nonorm, -wide; baseA-WA
(a wide base); chains A7B7C+ and A7B7C+WA on a split with sides A, B, C (splits chain).
See the README.
"""

SUBMIT_DESCRIPTION = """\
Run the jobs of a planned study that are not done, queued or running.

  --executor slurm  sbatch through submitit: jobs grouped into arrays by the base network they
                    wait for (afterok on that base's array task), requeued on timeout or
                    preemption and resumed from their checkpoint.  Resources come from the
                    config's [slurm] table; the flags below override them.
  --executor local  this machine: the dependency graph with --workers processes (default one per GPU;
                    more than the GPUs share them)
  --executor debug  in this process, one job after another (tests, debugging)

Failed jobs are left alone unless --retry-failed; --dry-run prints what would be submitted and
why the rest is skipped.  Progress is tracked in jobs/<study>/manifest.json and the files the
jobs write, so `status` works without Slurm accounting (sacct).
"""


TRAIN_DESCRIPTION = """\
Train one network from a job spec (JSON): its key, dataset, split file and side, condition
(base, selffer, transfer, random_init, preserved; n_transferred; fine_tune; n_preserved),
source_checkpoint, model and train settings (the paper's recipe by default), out_dir;
optionally growth (a developmental network: variant, units, new, normalize, scale_init,
scope, new_lr_mult; see transferbench/worker/grow.py) and forgetting_side (measure the source
network's accuracy on that side after training).
Writes out_dir/checkpoint.pt every train.checkpoint_every iterations and on SIGTERM/SIGUSR1
(then exits 143, to be requeued), out_dir/model.pt and out_dir/result.json at the end.
Run it again on the same spec and it resumes from the checkpoint.
"""

SPLITS_DESCRIPTION = """\
Make class splits: which classes form task A and task B.  Each split is written as one
self-describing JSON file (classes per side with index, wnid and name; method; parameters;
WordNet version; content hash).  With --list, a Caffe-style image list ('<file> <class
index>' per line) is also split into one list per side, labels renumbered 0..n-1 in
increasing original index, byte-for-byte as the authors' scripts wrote them.

  random      the paper's random halves: np.random.seed([seed]) + choice(..., replace=False)
  stratified  random halves balanced within every WordNet cluster (|A-B| <= 1 for each)
  natman      natural vs man-made by a WordNet rule (a preset of roots and overrides)
  reduced     every class capped to its first k images (the paper's data-size study)
  chain       a random partition into tasks A, B, C, ... for chains of transfers
  paper       regenerate every split committed under splits/
  table       regenerate a shipped class table (needs WordNet)
"""


def _add_common(parser: argparse.ArgumentParser, dataset: bool = True, classes: bool = True, layouts: bool = True) -> None:
    if dataset:
        from transferbench.schema.spec import LAYOUTS

        choices = ("imagenet1k", "cifar100", "fashion-mnist", "synthetic", *(LAYOUTS if layouts else ()))
        parser.add_argument("--dataset", default="imagenet1k", choices=choices,
                            help="whose classes to split (default: imagenet1k)" + (
                                "; cub200, mit67, sun397, caltech101 and folder are read from --data-root" if layouts else ""))
    if dataset and layouts:
        parser.add_argument("--data-root", type=Path, metavar="DIR",
                            help="a dataset read from its layout: the folder it unpacked to (its classes come from there)")
        parser.add_argument("--background", action="store_true",
                            help="caltech101: keep BACKGROUND_Google as a class (left out by default)")
    if classes:
        parser.add_argument("--classes", type=Path, metavar="FILE",
                            help="split only these classes: a file with one wnid per line (default: all classes)")
    parser.add_argument("--out", type=Path, default=Path("splits"), metavar="DIR",
                        help="folder for the split files (default: splits/)")
    parser.add_argument("--list", type=Path, metavar="FILE", dest="image_list",
                        help="also split this Caffe-style image list ('<file> <class index>' per line)")
    parser.add_argument("--list-out", type=Path, metavar="DIR",
                        help="folder for the split image lists (default: the --out folder)")
    parser.add_argument("--name", help="name of the split file (default: <dataset>-<method><seed>)")


def _add_wordnet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wordnet-dir", metavar="DIR",
                        help="a WordNet 3.0 database folder, e.g. /usr/share/wordnet from Debian's wordnet-base "
                             "(default: $TRANSFERBENCH_WORDNET_DIR, then nltk's data path)")


def build_parser() -> argparse.ArgumentParser:
    formatter = _Formatter
    parser = argparse.ArgumentParser(prog="transferbench", description=DESCRIPTION, formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"transferbench {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    splits = commands.add_parser("splits", help="make the class splits (random, stratified, natman, reduced)",
                                 description=SPLITS_DESCRIPTION, formatter_class=formatter)
    methods = splits.add_subparsers(dest="method", metavar="METHOD", required=True)

    random_parser = methods.add_parser(
        "random", help="the paper's random A/B halves", formatter_class=formatter,
        description="Random halves exactly as Yosinski et al. 2014 drew them: NumPy's legacy generator seeded "
                    "with [seed], A = sorted(choice(arange(N), N/2, replace=False)), B = the rest. Seeds 0-3 on "
                    "imagenet1k are the paper's four splits.")
    random_parser.add_argument("--seed", type=int, nargs="+", default=[0], help="one or more seeds (default: 0)")
    random_parser.add_argument("--size-a", type=int, help="classes in A (default: half; an odd class count needs it)")
    _add_common(random_parser)

    stratified = methods.add_parser(
        "stratified", help="random halves balanced within every WordNet cluster", formatter_class=formatter,
        description="A random A/B split in which every WordNet cluster is divided as evenly as possible. The "
                    "clusters are all nodes of the tree formed by the classes' canonical hypernym paths, so "
                    "|A ∩ c| - |B ∩ c| is -1, 0 or 1 for the 13 felids, the dogs, the terriers and every other "
                    "group at every depth. Prints how the tightest clusters were divided and how the plain "
                    "random split with the same seed divided them.")
    stratified.add_argument("--seed", type=int, nargs="+", default=[0], help="one or more seeds (default: 0)")
    stratified.add_argument("--min-cluster", type=int, default=10,
                            help="report clusters of at least this many classes (default: 10)")
    stratified.add_argument("--wordnet-map", type=Path, metavar="FILE",
                            help="a dataset read from its layout: '<class name><TAB><synset>' per line (default: the one "
                                 "that ships for it, if any); every class must map")
    _add_common(stratified)
    _add_wordnet(stratified)

    natman = methods.add_parser(
        "natman", help="natural vs man-made classes from a WordNet rule", formatter_class=formatter,
        description="Natural (A) vs man-made (B): a class is natural if a WordNet hypernym path reaches one of "
                    "the preset's natural roots, unless the preset overrides it. Shipped presets: yosinski2014 "
                    "(imagenet1k, reproduces the paper's 449/551 lists), cifar100, fashion-mnist (clothing vs "
                    "footwear and bags). Lists every class where the preset overrides the plain rule. Needs WordNet.")
    natman.add_argument("--preset", default="yosinski2014", help="a shipped preset name or a .toml file (default: yosinski2014)")
    _add_common(natman, dataset=False)
    _add_wordnet(natman)

    reduced = methods.add_parser(
        "reduced", help="every class capped to its first k images", formatter_class=formatter,
        description="The paper's data-size study: all classes, each with only its first k training images in "
                    "list order. With --list, writes the capped list.")
    reduced.add_argument("--k", type=int, nargs="+", required=True, metavar="K",
                         help="images per class, one or more (the paper: 1 2 5 10 25 50 100 250 500 750 1000 1300)")
    _add_common(reduced, classes=False, layouts=False)

    chain = methods.add_parser(
        "chain", help="a random partition into tasks A, B, C, ... (chains of transfers)", formatter_class=formatter,
        description="Sides A, B, C, ...: a random permutation of the classes (NumPy's legacy generator seeded with "
                    "[seed]) cut into --parts near-equal tasks, for chains such as A -> B -> C in a study's "
                    "continual-growth block (network patterns like A7B7C+ and A7B7C+WA).")
    chain.add_argument("--seed", type=int, nargs="+", default=[0], help="one or more seeds (default: 0)")
    chain.add_argument("--parts", type=int, default=3, help="number of tasks (default: 3)")
    _add_common(chain)

    paper = methods.add_parser(
        "paper", help="regenerate every split committed under splits/", formatter_class=formatter,
        description="Writes the splits of the paper's study (imagenet1k random 0-3, stratified 0-3, natman) and "
                    "those of the small datasets (cifar100, fashion-mnist: random 0-3, stratified 0-3, natman). Needs WordNet.")
    paper.add_argument("--out", type=Path, default=Path("splits"), metavar="DIR", help="folder (default: splits/)")
    _add_wordnet(paper)

    table = methods.add_parser(
        "table", help="regenerate a shipped class table from WordNet", formatter_class=formatter,
        description="Rebuild transferbench/data/<dataset>_classes.tsv (index, wnid, synset, names, canonical "
                    "hypernym path) from the dataset's class list and WordNet 3.0.")
    table.add_argument("dataset", choices=("imagenet1k", "cifar100", "fashion-mnist"))
    table.add_argument("--synset-words", type=Path, metavar="FILE",
                       help="ILSVRC-2012 synset_words.txt (imagenet1k only)")
    table.add_argument("--out", type=Path, required=True, metavar="FILE", help="where to write the table")
    _add_wordnet(table)
    demo = commands.add_parser("demo", help="the whole pipeline on built-in data, in minutes", formatter_class=formatter,
                               description="Plans a small study (base networks, BnB, BnB+, AnB, AnB+ at n = 1, 4, 7, "
                                           "random-init frozen layers, one developmental network grown by 64 fc7 units), trains it with the local executor (one job per "
                                           "core, or per GPU), collects the results, plots the paper's figures and says "
                                           "what they show. The default data are synthetic (procedurally generated, "
                                           "seeded: see transferbench/worker/synthetic.py). Run it again to resume.")
    demo.add_argument("--dataset", default="synthetic", choices=("synthetic", "fashion-mnist"),
                      help="synthetic (built in) or fashion-mnist (Debian's dataset-fashion-mnist or --data-root)")
    demo.add_argument("--out", type=Path, default=Path("transferbench-demo"), metavar="DIR",
                      help="where the jobs, results and figures go (default: ./transferbench-demo)")
    demo.add_argument("--workers", type=int, help="networks trained at once (default: 2 on CPU; on GPUs up to 8, sharing them)")
    demo.add_argument("--data-root", metavar="DIR", help="Fashion-MNIST folder (default: Debian's install)")
    demo.add_argument("--first-seed", type=int, default=0, metavar="S",
                      help="train every network with seeds S, S+1, S+2 (default 0): another draw of the same study")
    demo.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE", dest="settings",
                      help="override one value of the demo's config, as for plan (repeatable): e.g. --set "
                           "train.iterations=40 --set study.seeds=[0] for a quick look")

    pack = commands.add_parser("pack", help="build a study's ImageNet pack by hand (submit does it first anyway)",
                               formatter_class=formatter,
                               description="Decode the ImageNet images a planned study reads into its pack_dir once "
                                           "(uint8, 256x256, with the training set's mean image), train and val. submit "
                                           "builds it as the study's first job; run this to build it ahead, e.g. on a "
                                           "node with many cores. Safe to run twice at once (the second waits for the "
                                           "first) and resumable if killed.")
    pack.add_argument("study", type=Path, metavar="jobs/STUDY")

    plan = commands.add_parser("plan", help="expand a study config into every job", description=PLAN_DESCRIPTION,
                               formatter_class=formatter)
    plan.add_argument("config", type=Path, metavar="CONFIG", nargs="?",
                      help="the study config: a path (configs/yosinski2014.toml) or a preset's name (yosinski2014)")
    plan.add_argument("--list", action="store_true", help="list the presets that ship with transferbench, and stop")
    plan.add_argument("--jobs-dir", type=Path, metavar="DIR", help="where jobs/<study>/ goes (default: ./jobs)")
    plan.add_argument("--data-root", metavar="DIR", help="the dataset folder (overrides [study] data_root)")
    plan.add_argument("--val-list", metavar="FILE", help="ImageNet: the Caffe-style list of a flat val/ folder "
                                                         "(overrides [study] val_list)")
    plan.add_argument("--pack-dir", metavar="DIR", help="ImageNet: where the uint8 pack goes (overrides [study] pack_dir)")
    plan.add_argument("--cancel-changed", action="store_true",
                      help="cancel the changed or removed jobs that are still queued or running (scancel, or SIGTERM "
                           "to a local worker) and wait for them to end; without it plan stops and writes nothing")
    plan.add_argument("--fuse", action="store_true", help="train the networks that share a data stream (same split, "
                      "side, seed and recipe) together, one process per group (the same as --set study.fuse=true)")
    plan.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE", dest="settings",
                      help="override one config value, checked like the file's own (repeatable): e.g. --set "
                           "train.lr=0.001, --set study.seeds=[0,1], --set block.2.n=[1,7]; values are read as TOML")

    submit = commands.add_parser("submit", help="run a planned study (Slurm, local or debug)", description=SUBMIT_DESCRIPTION,
                                 formatter_class=formatter)
    submit.add_argument("study", type=Path, metavar="jobs/STUDY", help="the folder `plan` wrote")
    submit.add_argument("--executor", default="slurm", choices=("slurm", "local", "debug"), help="where jobs run (default: slurm)")
    submit.add_argument("--retry-failed", action="store_true", help="run failed jobs (and those blocked behind them) again")
    submit.add_argument("--retry-stalled", action="store_true",
                        help="train stalled networks (`status` names them) again with another seed (seed + 1000 per "
                             "retry; the key keeps its seed), and the finished networks that copy from them; earlier "
                             "attempts are kept in attempt<k>/ and listed in the new record")
    submit.add_argument("--dry-run", action="store_true", help="print what would be submitted and why, submit nothing")
    submit.add_argument("--workers", type=int, help="local executor: jobs at once (default: one per GPU, or 1; more than the GPUs share them)")
    for flag, kind, text in (("partition", str, "Slurm partition"), ("account", str, "Slurm account"), ("qos", str, "Slurm QOS"),
                             ("gpus", int, "GPUs per job"), ("cpus", int, "CPUs per job"), ("mem-gb", int, "memory per job, GB"),
                             ("time-min", int, "time limit per job, minutes"),
                             ("array-parallelism", int, "most tasks of one array running at once"),
                             ("folder", str, "submitit log folder (default: jobs/STUDY/slurm; must be on a shared filesystem)")):
        submit.add_argument(f"--{flag}", type=kind, help=f"{text} (overrides [slurm])")

    status = commands.add_parser("status", help="where every job of a study stands", formatter_class=formatter,
                                 description="A table of the jobs that are running, queued, blocked or failed (with the "
                                             "reason and the log path), the finished networks whose health is not "
                                             "'healthy' (stalled, not converged, ...), and the totals per state. Reads the "
                                             "job folders and squeue; works with Slurm accounting off. Exit status: 0 all "
                                             "well, 1 some failed or blocked, 3 Slurm could not be asked.")
    status.add_argument("study", type=Path, metavar="jobs/STUDY", help="the folder `plan` wrote")
    status.add_argument("--all", action="store_true", help="a line for every job, done and planned ones included")

    collect = commands.add_parser("collect", help="gather a study's results into results/<study>.csv", formatter_class=formatter,
                                  description="One row per finished network of the study (schema: `python -c \"import "
                                              "transferbench.schema.record as r; print(r.__doc__)\"`). A partly finished study "
                                              "collects what is done and lists what is missing.")
    collect.add_argument("study", type=Path, metavar="jobs/STUDY")
    collect.add_argument("--out", type=Path, metavar="FILE", help="CSV to write (default: results/<study>.csv)")

    caffe = commands.add_parser("import-caffe", help="the authors' Caffe logs -> a results CSV", formatter_class=formatter,
                                description="Read the published logs of Yosinski et al. 2014 (one folder per network: half0A, "
                                            "transfer0A0B_1_3, transfer-ft..., halfnatmanA, transfernatmanAB_1_2, nolearn_1_4, "
                                            "reduced-0010, netbase) into the results schema. Restarted networks have several "
                                            "logs: the newest line for an iteration wins. Networks without a log or unfinished "
                                            "are kept and flagged in the notes column.")
    caffe.add_argument("logs", type=Path, metavar="DIR", help="e.g. ../shared/reference/yosinski2014/logs")
    caffe.add_argument("--out", type=Path, default=Path("results/yosinski2014.csv"), metavar="FILE",
                       help="CSV to write (default: results/yosinski2014.csv)")
    caffe.add_argument("--study", default="yosinski2014", help="study name in the CSV (default: yosinski2014)")

    weights = commands.add_parser(
        "import-weights", help="check (and convert) a pretrained network's weights file", formatter_class=formatter,
        description="Read a pretrained network from a local file and map it onto transferbench's 8-layer network, layer by "
                    "layer, every shape checked: a Caffe .caffemodel (read with protobuf; CaffeNet's topology checked; "
                    "conv1 reversed from BGR to RGB), torchvision's AlexNet state dict (its std folded into conv1), or a "
                    "state dict in CaffeNet's names. Prints the mapping and the input it expects. `plan` imports a "
                    "[source.NAME] weights file the same way; --out writes model.pt, mean.pt and source.json here too.")
    weights.add_argument("file", type=Path, metavar="FILE", help="the .caffemodel, .pth or .pt file")
    weights.add_argument("--format", choices=("caffe", "torchvision-alexnet", "state-dict"),
                         help="the file's layout (default: from the suffix and the keys)")
    weights.add_argument("--mean", help="the mean to subtract: a Caffe .binaryproto or .npy image, or R,G,B values "
                                        "(default: ImageNet's per-channel mean; torchvision's own for its AlexNet)")
    weights.add_argument("--channel-order", choices=("RGB", "BGR"), help="a state dict's conv1 channel order (default RGB)")
    weights.add_argument("--size", type=int, help="images are resized to SIZE x SIZE before the crop (default 256)")
    weights.add_argument("--out", type=Path, metavar="DIR", help="write the converted weights and their description here")

    plot = commands.add_parser("plot", help="the paper's figures and tables from results CSVs", formatter_class=formatter,
                               description="Writes <study>-fig2, -fig3, -reduced, -preserved (PNG and PDF) and "
                                           "<study>-boost.csv per study in the CSVs, and prints the lingering-boost table "
                                           "with 95% bootstrap intervals. Works on partial data and says what is missing.")
    plot.add_argument("csv", type=Path, nargs="*", metavar="CSV", help="results CSVs (default: every CSV under results/)")
    plot.add_argument("--out", type=Path, default=Path("results/figures"), metavar="DIR",
                      help="folder for the figures (default: results/figures)")
    plot.add_argument("--reference", metavar="STUDY", help="overlay this study's means, e.g. yosinski2014 (read from "
                                                            "./results/<STUDY>.csv, else the copy that ships with "
                                                            "transferbench); with no CSV of your own, draw it")
    plot.add_argument("--metric", default="top1_mean_best10", choices=("top1_mean_best10", "top1_final"),
                      help="per-network value (default: the paper's mean of the 10 best evaluations)")

    probe = commands.add_parser("probe", help="per-layer probes (linear probe, CKA, LogME, LEEP) beside the measured curve",
                                formatter_class=formatter,
                                description="For every split and seed of a study whose baseA and baseB finished healthy: "
                                            "per layer 1..7, on side B's images, the top-1 of a fixed linear probe on "
                                            "baseA's features, their LogME, and the linear CKA of baseA's and baseB's "
                                            "features; LEEP of baseA's classifier. Forward passes only. Writes "
                                            "<study>-probes.csv and <study>-probes.png (each probe beside the measured AnB "
                                            "curve, with Kendall's tau between them). The recipe: transferbench/probe/run.py.")
    probe.add_argument("study", type=Path, metavar="jobs/STUDY")
    probe.add_argument("--out", type=Path, default=Path("results/figures"), metavar="DIR",
                       help="where the CSV and figure go (default: results/figures)")
    probe.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")

    bench = commands.add_parser("bench", help="throughput and memory of the networks and the data path, vs a reference loop",
                                formatter_class=formatter, description=BENCH_DESCRIPTION)
    bench.add_argument("--device", help="cpu or cuda (default: cuda when one is visible)")
    bench.add_argument("--batch-size", type=int, help="images per batch (default: 256 on CUDA, 16 on CPU)")
    bench.add_argument("--iterations", type=int, help="timed iterations per row (default: 20 on CUDA, 2 on CPU)")
    bench.add_argument("--warmup", type=int, help="untimed iterations before each row (default: 5 on CUDA, 1 on CPU)")
    bench.add_argument("--images", type=Path, metavar="DIR", help="real JPEGs to read (e.g. an ImageNet train folder; "
                                                                   "default: generate random 500x375 JPEGs)")
    bench.add_argument("--count", type=int, help="JPEGs to generate or read (default: 2048 on CUDA, 64 on CPU)")
    bench.add_argument("--workers", type=int, default=0, help="decoding threads / DataLoader processes (default: one per core, at most 8)")
    bench.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                       help="bf16 autocast in transferbench's rows (default: on with CUDA)")
    bench.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                       help="channels_last layout in transferbench's rows (default: on with CUDA)")
    bench.add_argument("--compile", action="store_true", help="torch.compile transferbench's models")
    bench.add_argument("--rows", nargs="+", choices=("model", "fused", "data", "train"), metavar="GROUP",
                       help="measure only these groups of rows: model, fused (the seven AnB networks fused vs one after "
                            "another), data, train (default: all)")
    bench.add_argument("--matrix", action="store_true", help="also CaffeNet's model rows in fp32 and bf16, NCHW and "
                       "channels_last, and compiled (the compiled rows take a minute or two to compile)")
    bench.add_argument("--arch", nargs="+", choices=("caffenet", "small"), default=["caffenet", "small"],
                       help="networks of the model rows (default: both)")
    bench.add_argument("--out", type=Path, metavar="FILE.json", help="also write the figures here")

    task = commands.add_parser("task")  # one job (or fused group) of a study, what the local executor starts: not listed
    task.add_argument("study", type=Path)
    task.add_argument("keys", nargs="+")

    train = commands.add_parser("train", help="train one network from a job spec", description=TRAIN_DESCRIPTION,
                                formatter_class=formatter)
    train.add_argument("spec", type=Path, metavar="SPEC.json", help="the job spec")
    train.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run_plan(args: argparse.Namespace) -> None:
    import time

    from transferbench.study.plan import build_plan, write_plan

    if args.list:
        from transferbench.shipped import preset_summary, presets

        for name, path in presets().items():
            print(f"{name:34s} {preset_summary(path)}")
        print(f"(from {next(iter(presets().values())).parent}; a ./configs/<name>.toml of your own comes first)"
              if presets() else "no presets found")
        return
    if args.config is None:
        raise UserError("give a study config (a path, or a preset's name; `transferbench plan --list` lists them)")
    started = time.perf_counter()
    # Paths on the command line are relative to where it runs (those in the config, to the config's folder).
    overrides = {name: str(Path(getattr(args, name)).expanduser().resolve())
                 for name in ("data_root", "val_list", "pack_dir") if getattr(args, name)}
    settings = [_absolute_path_setting(text) for text in args.settings] + (["study.fuse=true"] if args.fuse else [])
    plan = build_plan(args.config, args.jobs_dir, overrides or None, settings)
    write_plan(plan, cancel_changed=args.cancel_changed)
    print(plan.summary(), end="")
    print(f"planned in {time.perf_counter() - started:.2f} s; next: transferbench submit {plan.study_dir}")


PATH_KEYS = ("data_root", "val_list", "pack_dir", "split_dir", "jobs_dir", "weights", "mean")


def _absolute_path_setting(text: str) -> str:
    """``--set source.x.weights=models/a.caffemodel``: a relative path on the command line is relative
    to where the command runs (one in the config file, to the config's folder), as --data-root is."""
    import json

    from transferbench.schema.loader import parse_override

    keys, value = parse_override(text)
    if keys[-1] in PATH_KEYS and isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
        return f"{'.'.join(keys)}={json.dumps(str(Path(value).expanduser().resolve()))}"
    return text


def run_submit(args: argparse.Namespace) -> int:
    from transferbench.study.executors import submit
    from transferbench.study.status import status_table

    overrides = {name: getattr(args, name) for name in ("partition", "account", "qos", "gpus", "cpus", "array_parallelism", "folder")}
    overrides.update(mem_gb=args.mem_gb, time_min=args.time_min)
    submit(args.study, args.executor, args.retry_failed, args.dry_run, overrides, args.workers,
           retry_stalled=args.retry_stalled)
    if args.executor != "slurm" and not args.dry_run:
        table, totals = status_table(args.study)
        print(table, end="")
        return 1 if totals["failed"] or totals["blocked"] else 0
    return 0


def run_status(args: argparse.Namespace) -> int:
    from transferbench.study.status import status_table

    table, totals = status_table(args.study, args.all)
    print(table, end="")
    if totals["unknown"]:
        return 3  # Slurm could not be asked: the states are not known
    return 1 if totals["failed"] or totals["blocked"] else 0


def run_task(args: argparse.Namespace) -> int:
    from transferbench.study.executors import TaskFailed, run_unit
    from transferbench.worker.train import StopRequested

    try:
        run_unit(str(args.study), args.keys)
    except StopRequested as stop:
        print(f"transferbench: stopped by {stop}; checkpoint written", file=sys.stderr)
        return 143
    except TaskFailed as exc:
        print(f"transferbench: error: {exc}", file=sys.stderr)
        return 1
    return 0


def run_collect(args: argparse.Namespace) -> None:
    from transferbench.analysis.results import collect_rows, health_lines, write_rows
    from transferbench.study.status import Study

    rows, missing = collect_rows(args.study)
    out = args.out or Path("results") / f"{Study.open(args.study).name}.csv"
    if out.is_file() and "caffe-log" in out.read_text(encoding="utf-8"):
        raise UserError(f"{out} holds imported published results; give --out FILE for this study's results")
    if not rows:
        raise UserError(f"no job of {args.study} has finished yet ({len(missing)} missing); see `transferbench status {args.study}`")
    write_rows(out, rows)
    unusable = sum(1 for r in rows if not r.usable)
    print(f"wrote {out}: {len(rows)} networks" + (f", {unusable} of them left out of means, figures' lines and tables "
                                                  "(the health column says why)" if unusable else ", all healthy enough to count"))
    for line in health_lines(rows):
        print(f"  {line}")
    corrupt = [m for m in missing if "(corrupt result record" in m]
    for line in corrupt:
        print(f"  left out: {line}")
    waiting = [m for m in missing if m not in corrupt]
    if waiting:
        print(f"{len(waiting)} not finished yet: {', '.join(waiting[:5])}{' ...' if len(waiting) > 5 else ''}")


def run_import_caffe(args: argparse.Namespace) -> None:
    from transferbench.analysis.results import caffe_rows, health_lines, write_rows

    rows = caffe_rows(args.logs, args.study, progress=sys.stderr.isatty())
    write_rows(args.out, rows)
    flagged = [r for r in rows if r.notes]
    print(f"wrote {args.out}: {len(rows)} networks, {len(rows) - len(flagged)} complete")
    for row in flagged:
        print(f"  {row.key}: {row.notes}")
    for line in health_lines(rows):
        print(f"  {line}")


def run_import_weights(args: argparse.Namespace) -> None:
    from transferbench.worker.sources import describe, import_weights, safe_name, write_imported

    mean = args.mean
    if mean and "," in mean and not Path(mean).exists():
        try:
            mean = [float(value) for value in mean.split(",")]
        except ValueError:
            raise UserError(f"--mean {args.mean!r}: give a mean file or comma-separated numbers, e.g. 123.68,116.78,103.94") from None
    imported = import_weights(args.file, safe_name(args.file.stem), args.format, mean, args.channel_order, args.size)
    info = write_imported(imported, args.out) if args.out else imported.info
    print(describe(info))
    if args.out:
        print(f"wrote {args.out / 'model.pt'}, {args.out / 'mean.pt'} and {args.out / 'source.json'}")


def run_probe(args: argparse.Namespace) -> None:
    import numpy as np

    from transferbench.probe.run import LAYER_MEASURES, probe_study

    result = probe_study(args.study, args.out, args.device)
    print(f"probed in {result['seconds']:.0f} s ({100 * result['seconds'] / max(1.0, result['training_seconds']):.1f}% "
          f"of the {result['training_seconds']:.0f} s its networks took to train): {result['csv']}")
    for name, part in result["parts"].items():
        print(f"{name}: {part['figure']}")
        for measure in LAYER_MEASURES:
            a = part["agreement"][measure]
            print(f"  {measure:6s} Kendall tau with the measured AnB curve: {a['tau']:+.2f} "
                  f"[{a['low']:+.2f}, {a['high']:+.2f}] over {a['pairs']} splits/seeds" if a["pairs"] else
                  f"  {measure:6s} no measured AnB curve of 3 or more layers to compare with")
        print(f"  leep   of baseA's classifier on side B: {np.mean(part['leep']):+.3f} (mean over {len(part['leep'])} "
              "splits/seeds; one number per network, so no curve)")


def run_plot(args: argparse.Namespace) -> None:
    import time

    from transferbench.analysis.figures import plot_all
    from transferbench.analysis.results import read_csv

    started = time.perf_counter()
    paths = args.csv or sorted(Path("results").glob("*.csv"))
    reference = None
    if args.reference:
        from transferbench.shipped import find_results

        reference_path = find_results(args.reference)
        reference = read_csv(reference_path)
        if not paths:  # nothing of the user's: draw the reference study itself
            paths = [reference_path]
            reference = None
    if not paths:
        raise UserError("no CSV given and none under results/; run `transferbench collect jobs/STUDY`, give a CSV, "
                        "or `--reference yosinski2014` for the published results")
    rows = [row for path in paths for row in read_csv(path)]
    if reference is not None:
        # The published rows are told from a user's own by their source, not by the study's name: a
        # user who planned the yosinski2014 preset has rows named yosinski2014 too.
        published = {(row.study, row.source) for row in reference}
        rows = [row for row in rows if (row.study, row.source) not in published]
    written = plot_all(rows, args.out, reference, args.metric)
    print(f"wrote {len(written)} files to {args.out} in {time.perf_counter() - started:.1f} s:")
    for path in written:
        print(f"  {path}")


def run_train(args: argparse.Namespace) -> int:
    from transferbench.schema.spec import load_spec
    from transferbench.worker.train import StopRequested, run_job

    try:
        record = run_job(load_spec(args.spec), args.device, progress=not args.no_progress)
    except StopRequested as stop:
        print(f"transferbench: stopped by {stop}; checkpoint written, run again to resume", file=sys.stderr)
        return 143
    if record.status != "done":
        print(f"transferbench: error: {record.key} {record.reason}", file=sys.stderr)
        return 1
    print(f"{record.key}: top-1 {record.top1_final:.4f} (mean of 10 best {record.top1_mean_best10:.4f}), "
          f"{record.iterations} iterations, {record.wall_time_s:.1f} s -> {Path(record.spec['out_dir']) / 'result.json'}")
    health = record.health or {}
    if health.get("state") not in (None, "healthy"):
        print(f"  health: {health['state'].replace('_', ' ')}: {health.get('reason')}")
    return 0


def run_splits(args: argparse.Namespace) -> None:
    from transferbench.tasks import splitcmd
    from transferbench.tasks.classes import load_table
    from transferbench.tasks.splits import read_image_list

    echo = print
    if args.method == "table":
        from transferbench.fileio import atomic_write_text
        from transferbench.tasks.wordnet import load_wordnet

        table = splitcmd.make_table(args.dataset, args.synset_words, load_wordnet(args.wordnet_dir))
        atomic_write_text(args.out, table.to_tsv())
        echo(f"wrote {args.out} ({len(table)} classes)")
        return
    if args.method == "paper":
        from transferbench.tasks.wordnet import load_wordnet

        splits = splitcmd.paper_splits(load_wordnet(args.wordnet_dir), echo)
        for split in splits:
            echo(splitcmd.describe(split))
        splitcmd.write_splits(splits, splitcmd.Outputs(args.out), echo)
        return

    wnids = splitcmd.read_wnid_list(getattr(args, "classes", None))
    if args.method == "natman":
        from transferbench.tasks.splits import load_natman_preset, natman_split
        from transferbench.tasks.wordnet import load_wordnet

        preset = load_natman_preset(args.preset)
        split, disagreements = natman_split(preset, load_wordnet(args.wordnet_dir), wnids, args.name)
        splits = [split]
        echo(splitcmd.disagreement_report(split, disagreements))
    else:
        table = load_table(args.dataset) if args.method == "reduced" else splitcmd.dataset_table(
            args.dataset, args.data_root, getattr(args, "wordnet_map", None), getattr(args, "wordnet_dir", None),
            need_wordnet=args.method == "stratified", background=args.background)
        values = args.k if args.method == "reduced" else args.seed
        if args.name and len(values) > 1:
            raise UserError("--name names one split; give a single --seed/--k or drop --name")
        if args.method == "random":
            from transferbench.tasks.splits import random_split

            splits = [random_split(table, seed, wnids, args.size_a, args.name) for seed in args.seed]
        elif args.method == "stratified":
            from transferbench.tasks.splits import random_split, stratified_split

            splits = []
            for seed in args.seed:
                split = stratified_split(table, seed, wnids, args.name)
                echo(splitcmd.balance_report(split, random_split(table, seed, wnids), args.min_cluster))
                splits.append(split)
        elif args.method == "chain":
            from transferbench.tasks.splits import chain_split

            splits = [chain_split(table, seed, args.parts, wnids, args.name) for seed in args.seed]
        else:
            from transferbench.tasks.splits import reduced_split

            splits = [reduced_split(table, k, args.name) for k in args.k]
    image_list = None
    if args.image_list is not None:
        image_list = read_image_list(args.image_list, sum(len(classes) for classes in splits[0].sides.values()))
    for split in splits:
        echo(splitcmd.describe(split))
    splitcmd.write_splits(splits, splitcmd.Outputs(args.out, image_list, args.list_out), echo)


def run_bench(args: argparse.Namespace) -> None:
    import dataclasses

    import torch

    from transferbench.bench import BenchConfig, run_bench as bench

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    config = BenchConfig.defaults(device)
    changes = {"batch_size": args.batch_size, "iterations": args.iterations, "warmup": args.warmup, "images": args.count,
               "amp": args.amp, "channels_last": args.channels_last, "compile": args.compile or None,
               "workers": args.workers or None, "archs": tuple(args.arch),
               "matrix": args.matrix or None, "groups": tuple(args.rows) if args.rows else None}
    bench(dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None}), args.images, args.out)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (tables, aligned lists, commands set off by two spaces), except that
    a paragraph written as one long line of prose is wrapped to the terminal like any other help text."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        paragraphs = []
        for paragraph in text.split("\n\n"):
            if "\n" not in paragraph.strip() and "  " not in paragraph.strip() and len(paragraph) > width:
                paragraph = textwrap.fill(paragraph.strip(), width, initial_indent=indent, subsequent_indent=indent)
            paragraphs.append(paragraph)
        return super()._fill_text("\n\n".join(paragraphs), width, indent)


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """Warnings as one line a user reads, not Python's source-line dump."""
    return f"transferbench: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    warnings.formatwarning = _warning_line
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "splits":
            run_splits(args)
        elif args.command == "train":
            return run_train(args)
        elif args.command == "demo":
            from transferbench.demo import run_demo

            run_demo(args.dataset, args.out, args.workers, args.data_root, first_seed=args.first_seed, settings=args.settings)
        elif args.command == "plan":
            run_plan(args)
        elif args.command == "submit":
            return run_submit(args)
        elif args.command == "probe":
            run_probe(args)
        elif args.command == "pack":
            from transferbench.study.executors import build_packs

            count = build_packs(str(args.study))
            print(f"{count} packs ready" if count else f"{args.study} has no ImageNet job with a pack_dir: nothing to pack")
        elif args.command == "status":
            return run_status(args)
        elif args.command == "collect":
            run_collect(args)
        elif args.command == "import-caffe":
            run_import_caffe(args)
        elif args.command == "import-weights":
            run_import_weights(args)
        elif args.command == "plot":
            run_plot(args)
        elif args.command == "bench":
            run_bench(args)
        elif args.command == "task":
            return run_task(args)
    except UserError as exc:
        print(f"transferbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("transferbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `transferbench plan ... | head`: the reader is gone, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
        return 0
    return 0
