"""Import the authors' raw Caffe logs (Yosinski et al. 2014) into transferbench's results schema.

One folder per network, named ``half{s}{A|B}``, ``transfer{s}{X}{s}{Y}_1_{n}``,
``transfer-ft…`` (fine-tuned), ``halfnatman{A|B}``, ``transfernatman{XY}_1_{n}``,
``nolearn_1_{n}``, ``reduced-{k}`` or ``netbase``, holding gzip logs (a restarted network
has several) and the prototxts. A Caffe test block reads::

    I0403 07:15:12.976109 23304 solver.cpp:96] Iteration 1000, Testing net
    I0403 07:17:23.362350 23304 solver.cpp:123] Test score #0: 0.0389203   <- top-1
    I0403 07:17:23.375859 23304 solver.cpp:123] Test score #1: 5.3778      <- loss

When several logs (or a concatenated log) report the same iteration, the newest line wins:
lines are ordered by their timestamp, then by the log's job number. The prototxt is checked
against the folder name: layers 1..n have learning rate 0 exactly when the name says frozen,
and layers n+1..8 are named ``*-new`` (re-initialised) for copied networks.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path

from transferbench.errors import UserError
from transferbench.schema.notation import parse_network
from transferbench.schema.spec import LAYER_NAMES

TEST_LINE = re.compile(r"^I(\d{4} \d\d:\d\d:\d\d\.\d+) .*Iteration (\d+), Testing net")
SCORE_LINE = re.compile(r"^I(\d{4} \d\d:\d\d:\d\d\.\d+) .*Test score #(\d+): ([-+0-9.eE]+|nan|inf)")
TIME = re.compile(r"^I(\d\d)(\d\d) (\d\d):(\d\d):(\d\d)")
TRAIN_LINE = re.compile(r"^I(\d{4} \d\d:\d\d:\d\d\.\d+) .*Iteration (\d+), loss = ([-+0-9.eE]+|nan|inf)")

NAME_PATTERNS = [
    (re.compile(r"^half(?P<s>\d)(?P<side>[AB])$"), "base"),
    (re.compile(r"^halfnatman(?P<side>[AB])$"), "base-natman"),
    (re.compile(r"^transfer(?P<ft>-ft)?(?P<s>\d)(?P<src>[AB])(?P=s)(?P<tgt>[AB])_1_(?P<n>\d)$"), "transfer"),
    (re.compile(r"^transfer(?P<ft>-ft)?natman(?P<src>[AB])(?P<tgt>[AB])_1_(?P<n>\d)$"), "transfer-natman"),
    (re.compile(r"^nolearn_1_(?P<n>\d)$"), "random_init"),
    (re.compile(r"^reduced-(?P<k>\d+)$"), "reduced"),
    (re.compile(r"^netbase$"), "netbase"),
]


@dataclass
class Network:
    """One network of the published study, as its folder and logs describe it."""

    folder: str
    split: str
    network: str  # the paper's notation, e.g. A3B+, baseA, R2, base
    condition: str  # base | selffer | transfer | random_init
    n: int
    fine_tune: bool
    source_side: str | None
    target_side: str | None
    evaluations: list[tuple[int, float, float]] = field(default_factory=list)  # (iteration, top-1, loss)
    train_loss: list[tuple[int, float]] = field(default_factory=list)  # (iteration, training loss) every 20 iterations
    max_iter: int | None = None
    logs: int = 0
    gpu_hours: float = 0.0
    notes: list[str] = field(default_factory=list)


def parse_folder_name(name: str) -> dict:
    """The split and network a log folder holds; condition, n and sides as the network's name says."""
    for pattern, kind in NAME_PATTERNS:
        match = pattern.match(name)
        if not match:
            continue
        g = match.groupdict()
        if kind in ("base", "base-natman"):
            split, network = (f"random{g['s']}" if kind == "base" else "natman"), f"base{g['side']}"
        elif kind in ("transfer", "transfer-natman"):
            split = f"random{g['s']}" if kind == "transfer" else "natman"
            network = f"{g['src']}{g['n']}{g['tgt']}{'+' if g.get('ft') else ''}"
        elif kind == "random_init":
            split, network = "all", f"R{g['n']}"
        elif kind == "reduced":
            split, network = f"reduced{int(g['k']):04d}", "base"
        else:
            split, network = "all", "base"
        parsed = parse_network(network)
        return dict(split=split, network=network, condition=parsed.kind, n=parsed.n, fine_tune=parsed.fine_tune,
                    source_side=parsed.source_side, target_side=parsed.target_side)
    raise UserError(f"log folder {name!r} is not a network of the published study (expected half0A, transfer0A0B_1_3, "
                    "transfer-ft…, halfnatmanA, transfernatmanAB_1_2, nolearn_1_4, reduced-0010 or netbase)")


def _job_number(path: Path) -> int:
    match = re.search(r"\.o(\d+)(?:\.gz)?$", path.name)
    return int(match.group(1)) if match else -1


def read_log(path: Path) -> tuple[list[tuple[str, int, float, float]], float, list[tuple[str, int, float]]]:
    """(timestamp, iteration, top-1, loss) for every complete test block, the hours the log spans,
    and (timestamp, iteration, loss) of every training-loss line (``Iteration N, loss = X``)."""
    opener = gzip.open if path.suffix == ".gz" else open
    blocks: list[tuple[str, int, float, float]] = []
    losses: list[tuple[str, int, float]] = []
    first = last = None
    current: dict | None = None
    try:
        with opener(path, "rt", errors="replace") as handle:
            for line in handle:
                if line.startswith("I"):
                    last = line
                    first = first or line
                if "Test" not in line:
                    if ", loss = " in line:
                        train = TRAIN_LINE.match(line)
                        if train:
                            losses.append((train.group(1), int(train.group(2)), float(train.group(3))))
                    continue
                test = TEST_LINE.match(line)
                if test:
                    current = {"time": test.group(1), "iteration": int(test.group(2))}
                    continue
                score = SCORE_LINE.match(line)
                if score and current is not None:
                    current[int(score.group(2))] = float(score.group(3))
                    if 0 in current and 1 in current:
                        blocks.append((current["time"], current["iteration"], current[0], current[1]))
                        current = None
    except (OSError, EOFError) as exc:
        raise UserError(f"cannot read Caffe log {path}: {exc}; the file is corrupt or truncated") from exc
    hours = 0.0
    first, last = (TIME.match(line) for line in (first or "", last or ""))
    if first and last:
        def seconds(parts):
            month, day, hour, minute, second = (int(p) for p in parts)
            return (((month * 31 + day) * 24 + hour) * 60 + minute) * 60 + second

        hours = max(0.0, seconds(last.groups()) - seconds(first.groups())) / 3600
    return blocks, hours, losses


def _solver_value(text: str, key: str) -> str | None:
    match = re.search(rf"^\s*{key}:\s*\"?([^\"\n]+)\"?", text, re.MULTILINE)
    return match.group(1).strip() if match else None


def check_prototxt(folder: Path, network: Network) -> None:
    """Compare the train prototxt with the condition the folder name states; add a note if they disagree."""
    path = folder / "imagenet_train.prototxt"
    if not path.is_file():
        network.notes.append("no imagenet_train.prototxt")
        return
    text = path.read_text(errors="replace")
    layers = {}
    for block in re.split(r"\n\s*layers\s*\{", text):
        name = re.search(r'name:\s*"([^"]+)"', block)
        if not name:
            continue
        base = name.group(1).removesuffix("-new")
        if base in LAYER_NAMES:
            rates = [float(v) for v in re.findall(r"blobs_lr:\s*([0-9.]+)", block)]
            layers[base] = (name.group(1).endswith("-new"), bool(rates) and all(r == 0 for r in rates))
    if len(layers) != 8:
        network.notes.append(f"prototxt has {len(layers)} of the 8 layers")
        return
    frozen = [name for name in LAYER_NAMES if layers[name][1]]
    expected_frozen = [] if network.fine_tune or network.condition == "base" else list(LAYER_NAMES[: network.n])
    if frozen != expected_frozen:
        network.notes.append(f"prototxt freezes {','.join(frozen) or 'nothing'}, the name says {','.join(expected_frozen) or 'nothing'}")
    if network.condition in ("selffer", "transfer"):
        new = [name for name in LAYER_NAMES if layers[name][0]]
        if new != list(LAYER_NAMES[network.n:]):
            network.notes.append(f"prototxt re-initialises {','.join(new)}, expected layers {network.n + 1}..8")


def read_network(folder: Path) -> Network:
    network = Network(folder.name, **parse_folder_name(folder.name))
    solver = folder / "imagenet_solver.prototxt"
    if solver.is_file():
        value = _solver_value(solver.read_text(errors="replace"), "max_iter")
        network.max_iter = int(value) if value else None
    logs = sorted((p for p in folder.iterdir() if re.search(r"\.o\w+(\.gz)?$", p.name)), key=_job_number)
    network.logs = len(logs)
    newest: dict[int, tuple[tuple[str, int], float, float]] = {}
    newest_loss: dict[int, tuple[tuple[str, int], float]] = {}
    for order, log in enumerate(logs):
        blocks, hours, losses = read_log(log)
        network.gpu_hours += hours
        for stamp, iteration, top1, loss in blocks:
            rank = (stamp, order)
            if iteration not in newest or rank >= newest[iteration][0]:
                newest[iteration] = (rank, top1, loss)
        for stamp, iteration, loss in losses:
            rank = (stamp, order)
            if iteration not in newest_loss or rank >= newest_loss[iteration][0]:
                newest_loss[iteration] = (rank, loss)
    network.evaluations = [(it, top1, loss) for it, (_, top1, loss) in sorted(newest.items())]
    network.train_loss = [(it, loss) for it, (_, loss) in sorted(newest_loss.items())]
    check_prototxt(folder, network)
    return network


def import_logs(root: Path, progress: bool = False) -> list[Network]:
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder of Caffe logs; give the results/ folder of the authors' repository "
                        "(git clone https://github.com/yosinski/convnet_transfer)")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise UserError(f"no network folders under {root}")
    iterator = folders
    if progress:
        from tqdm import tqdm

        iterator = tqdm(folders, desc="reading logs", unit="network", leave=False)
    return [read_network(folder) for folder in iterator]
