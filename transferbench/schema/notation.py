"""The paper's network notation, parsed in one place.

A *network name* names one trained network; a *pattern* (in a study config's ``networks``)
names a family of them, with n and S filled in by the planner.

| name                 | meaning                                                      | pattern          |
|----------------------|--------------------------------------------------------------|------------------|
| ``base``, ``baseA``  | all layers random and trained, on all classes / on side A    | ``base``, ``baseX`` |
| ``A3B``, ``A3B+``    | layers 1..3 copied from baseA, frozen / fine-tuned, on B     | ``AnB``, ``AnB+`` |
| ``B3B``, ``B3B+``    | the selffer: copied from the target side's own base           | ``BnB``, ``BnB+`` |
| ``R3``, ``R3B``      | random-init layers 1..3 frozen ("nolearn"), on all / on B    | ``Rn``, ``RnB``   |
| ``A3B^2``, ``A3B^2+``| preserved: 1..3 frozen, 4..5 copied and fine-tuned            | ``AnB^k(+)``      |
| ``A7B+WA64``         | developmental: A7B+ grown by 64 units (options below)         | ``A7B+WA``        |
| ``A7B7C+``, ``A7B7C+WA64`` | a chain of tasks A -> B -> C, fixed or grown at every step | the same  |
| ``baseA-WA64``       | a wide base: as wide as A7B+WA64, trained from scratch        | ``baseA-WA``      |
| ``A7B+-fc7``         | classic fine-tuning by scope: A7B+ with only fc7 and up trained | ``A7B+-fc7``    |
| ``A7B+WA64-onA``     | A7B+WA64 frozen whole, a new classifier trained on A (forgetting as Growing a Brain measures it) | planned by ``retrain_source`` |

Grown options, in this order: ``-new``/``-fc7``/``-fc6`` (fine-tuning scope; none means all),
``-nonorm`` (no L2 normalisation and scaling), ``-wide`` (as wide from the start).

Classic fine-tuning takes the scopes too (Growing a Brain's Table 1 compares the two scope by
scope): ``A7B+-new`` trains the new classifier alone (the network A7B), ``A7B+-fc7`` fc7 and the
classifier (A6B^1), ``A7B+-fc6`` fc6 up (A5B^2). They are named by scope so that a grown network
is compared with the classic network of its own scope; they stay out of the Yosinski figures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from transferbench.errors import UserError
from transferbench.schema.spec import VARIANTS

_VARIANT = "|".join(sorted(VARIANTS, key=len, reverse=True))
_OPTIONS = r"(?P<options>(?:-(?:new|fc7|fc6|all|nonorm|wide))*)"
_N = r"[1-9]\d?"  # n counts the architecture's blocks: 1..L (7 for the 8-layer networks), checked when planned
# Concrete names.
_CLASSIC = re.compile(rf"^(?:base(?P<base>[A-Z]?)|R(?P<rn>{_N})(?P<rside>[A-Z]?)"
                      rf"|(?P<src>[A-Z])(?P<n>{_N})(?P<tgt>[A-Z])(?:\^(?P<k>{_N}))?(?P<plus>\+)?)$")
_GROWN = re.compile(rf"^(?:base(?P<wide_base>[A-Z]?)-|(?P<chain>[A-Z](?:{_N}[A-Z])+)\+)(?:(?P<variant>{_VARIANT})(?P<size>\d+))?"
                    rf"{_OPTIONS}(?:-on(?P<on>[A-Z]))?$")
# Patterns: n, k and S left open.
_CLASSIC_PATTERN = re.compile(r"^(?:base(?P<base>[A-Z]?)|Rn(?P<random>[A-Z]?)|(?P<src>[A-Z])n(?P<tgt>[A-Z])(?P<pres>\^k)?(?P<plus>\+)?)$")
_GROWN_PATTERN = re.compile(rf"^(?:base(?P<wide_base>[A-Z]?)-|(?P<chain>[A-Z](?:(?:{_N}|L)[A-Z])+)\+)(?P<variant>{_VARIANT})?{_OPTIONS}$")
SCOPE_OPTIONS = ("new", "fc7", "fc6", "all")
PATTERN_CHOICES = ("baseA, base, AnB, AnB+, AnA, AnA+, RnB, Rn, AnB^k; developmental: A7B+WA or ALB+WA (all L blocks) (DA, WA, DWA, WWA; "
                   "options -new/-fc7/-fc6 scope, -nonorm, -wide), A7B+-fc7 (classic fine-tuning by scope), "
                   "baseA-WA (a wide base), A7B7C+ and A7B7C+WA (chains) "
                   "(X/Y any split side)")


@dataclass(frozen=True)
class NetworkName:
    """One network, as its name says. ``kind`` is the Condition kind it trains under."""

    text: str
    kind: str  # base | selffer | transfer | random_init | preserved
    n: int = 0  # layers 1..n copied (or random and frozen)
    fine_tune: bool = False
    k: int = 0  # preserved: layers n+1..n+k copied and fine-tuned
    source_side: str | None = None  # the side the copied layers were trained on (a chain: the previous task)
    target_side: str | None = None  # the side this network is trained on (None: all classes)
    chain: tuple[str, ...] = ()  # sides of a chain of n=7 fine-tuned transfers, e.g. ("A", "B", "C")
    variant: str | None = None  # DA | WA | DWA | WWA for developmental networks
    size: int | None = None  # S
    scope: str = "all"
    normalize: bool = True
    wide: bool = False  # as wide from the start (a wide base, or -wide)
    retrained_on: str | None = None  # -onA: this network frozen, a new classifier trained on side A

    @property
    def chain_steps(self) -> int:
        """Transfers along the chain: 1 for A7B+, 2 for A7B7C+."""
        return max(1, len(self.chain) - 1)

    @property
    def later_chain_step(self) -> bool:
        """A7B7C+ and beyond: the target of a transfer that was itself a transfer."""
        return self.chain_steps > 1

    @property
    def developmental(self) -> bool:
        """A grown or wide network, a later step of a chain, or classic fine-tuning of a narrower
        scope (A7B+-fc7): left out of the Yosinski figures."""
        return self.variant is not None or self.later_chain_step or self.scope != "all" or self.retrained_on is not None

    @property
    def classic_reference(self) -> str | None:
        """The classic network a developmental one is compared with first: A7B+WA128-fc7 ->
        A7B+-fc7 (the same scope), A7B7C+WA128 -> A7B7C+, baseB-WA128 -> baseB; None for a classic
        network."""
        references = self.classic_references
        return references[0] if references else None

    @property
    def classic_references(self) -> tuple[str, ...]:
        """The classic networks a developmental one may be compared with, in order of preference: a
        scoped one's own scope first, then classic fine-tuning of everything (A7B+-fc7 may not be
        planned)."""
        if self.retrained_on is not None:  # A7B+WA64-onA against A7B+-onA: both frozen, both retrained on A
            trained = parse_network(self.text.removesuffix(f"-on{self.retrained_on}"))
            return tuple(f"{name}-on{self.retrained_on}" for name in trained.classic_references)
        if self.variant is None:
            return ()
        if self.kind == "base":
            return (f"base{self.target_side or ''}",)
        classic = str(self.n).join(self.chain) + "+"
        return (f"{classic}-{self.scope}", classic) if self.scope != "all" and not self.later_chain_step else (classic,)


def _grown_options(text: str, options: str, variant: str | None, wide_base: bool,
                   chain: tuple[str, ...] = ()) -> tuple[str, bool, bool]:
    """(scope, normalize, wide) from ``-fc7-nonorm``-style options; a UserError if they clash."""
    parts = [o for o in options.split("-") if o]
    scopes = [o for o in parts if o in SCOPE_OPTIONS]
    if len(scopes) > 1 or len(set(parts)) < len(parts):
        raise UserError(f"network {text!r} repeats an option or names two scopes")
    if parts and not variant:
        if len(chain) != 2 or parts != scopes or scopes == ["all"]:
            raise UserError(f"network {text!r}: a plain network takes a scope alone, in one transfer (A7B+-new, "
                            "A7B+-fc7, A7B+-fc6); -nonorm and -wide apply to a grown network (add a variant: DA, WA, "
                            "DWA, WWA, e.g. A7B+WA-nonorm)")
    wide = "wide" in parts or wide_base
    if wide and "nonorm" in parts:
        # Normalisation lets new units catch up with pre-trained ones; a network that is
        # wide from the start trains all its units together, as a plain wider network.
        raise UserError(f"network {text!r}: a wide network is a plain wider network without normalisation already; drop -nonorm")
    if wide_base and scopes:
        raise UserError(f"network {text!r}: a wide base trains every layer from scratch; it takes no options")
    return (scopes or ["all"])[0], "nonorm" not in parts and not wide, wide


def _chain(text: str, chain: str | None) -> tuple[tuple[str, ...], int]:
    """The sides of a chain (``A7B7C`` -> A, B, C) and the n it copies at every step (0 for ``L``:
    every block of the architecture, whatever it is; a pattern's only)."""
    if not chain:
        return (), 0
    steps = re.findall(r"(\d+|L)([A-Z])", chain[1:])  # (n, side) after the first side
    counts = {count for count, _ in steps}
    if len(counts) > 1:
        raise UserError(f"network {text!r}: a chain copies every block at every step; its steps name one n, e.g. A7B7C+")
    count = counts.pop()
    return (chain[0], *(side for _, side in steps)), 0 if count == "L" else int(count)


@lru_cache(maxsize=None)  # names repeat across rows and jobs; a NetworkName is immutable
def parse_network(text: str) -> NetworkName:
    """A concrete network name (``A3B+``, ``R2``, ``A7B+WA64-fc7``...) -> NetworkName."""
    text = str(text)
    match = _CLASSIC.fullmatch(text)
    if match:
        g = match.groupdict()
        if g["rn"]:
            return NetworkName(text, "random_init", int(g["rn"]), target_side=g["rside"] or None)
        if g["src"] is None:
            return NetworkName(text, "base", target_side=g["base"] or None)
        kind = "preserved" if g["k"] else "selffer" if g["src"] == g["tgt"] else "transfer"
        return NetworkName(text, kind, int(g["n"]), bool(g["plus"]), int(g["k"] or 0), g["src"], g["tgt"])
    match = _GROWN.fullmatch(text)
    if match and (match.group("chain") or match.group("variant")):
        g = match.groupdict()
        if g["on"] and not g["chain"]:
            raise UserError(f"network {text!r}: -on{g['on']} retrains the classifier of a transferred network (A7B+WA64-onA)")
        if bool(g["variant"]) != bool(g["size"]):
            raise UserError(f"network {text!r}: a grown network names its variant and size, e.g. A7B+WA64")
        chain, n = _chain(text, g["chain"])
        scope, normalize, wide = _grown_options(text, g["options"], g["variant"], g["wide_base"] is not None, chain)
        size = int(g["size"]) if g["size"] else None
        if g["wide_base"] is not None:
            return NetworkName(text, "base", target_side=g["wide_base"] or None, variant=g["variant"], size=size,
                               normalize=False, wide=True)
        if g["on"]:  # the trained network frozen, a new classifier on side ``on``
            source = chain[-1]
            return NetworkName(text, "selffer" if g["on"] == source else "transfer", n, False, 0, source, g["on"], chain,
                               g["variant"], size, scope, normalize, wide, retrained_on=g["on"])
        kind = "selffer" if chain[-2] == chain[-1] else "transfer"
        fine_tune = bool(g["variant"]) or scope != "new"  # A7B+-new trains no copied layer: it is A7B
        return NetworkName(text, kind, n, fine_tune, 0, chain[-2], chain[-1], chain, g["variant"], size, scope, normalize, wide)
    raise UserError(f"unknown network name {text!r}; names read like baseA, A3B, A3B+, R2, A3B^2, A7B+WA64, A7B7C+")


@dataclass(frozen=True)
class Pattern:
    """A family of networks in a study config, with n (``AnB``), k (``AnB^k``) or S (``A7B+WA``) open."""

    text: str
    kind: str  # base | random_init | copy (XnY, selffer or transfer) | grown (wide bases, chains, grown)
    source: str | None = None  # X (a letter; "" for base/Rn on all classes)
    target: str | None = None  # Y
    fine_tune: bool = False
    preserved: bool = False
    chain: tuple[str, ...] = ()  # grown: sides of the chain; () for a wide base
    variant: str | None = None
    scope: str = "all"
    normalize: bool = True
    wide: bool = False
    n: int = 7  # a chain's, a grown network's: every block of the architecture (7 for the 8-layer networks; 0: "L", any)

    def name(self, n: int = 0, k: int = 0, size: int | None = None, step: int | None = None) -> str:
        """The concrete network name for n (and k), or, for a grown pattern, for S at chain ``step``
        (1: the first transfer; default the last)."""
        plus = "+" if self.fine_tune else ""
        if self.kind == "base":
            return f"base{self.target}"
        if self.kind == "random_init":
            return f"R{n}{self.target}"
        if self.kind == "copy":
            return f"{self.source}{n}{self.target}" + (f"^{k}" if self.preserved else "") + plus
        if not self.chain:  # a wide base
            return f"base{self.target}-{self.variant}{size}"
        step = len(self.chain) - 1 if step is None else step
        name = str(self.n).join(self.chain[:step + 1]) + "+"
        scope = f"-{self.scope}" if self.scope != "all" else ""
        if self.variant:
            name += f"{self.variant}{size}{scope}" + ("" if self.normalize or self.wide else "-nonorm") + ("-wide" if self.wide else "")
        else:
            name += scope  # classic fine-tuning by scope
        return name


def parse_pattern(text: str) -> Pattern:
    """A ``networks`` entry of a study config -> Pattern; a UserError names the valid ones."""
    text = str(text)
    match = _GROWN_PATTERN.fullmatch(text)
    if match:
        g = match.groupdict()
        chain, n = _chain(text, g["chain"])
        scope, normalize, wide = _grown_options(text, g["options"], g["variant"], g["wide_base"] is not None, chain)
        if g["wide_base"] is not None:
            if not g["variant"]:
                raise UserError(f"network {text!r}: a wide base names its variant, e.g. baseA-WA")
            return Pattern(text, "grown", target=g["wide_base"], variant=g["variant"], normalize=False, wide=True)
        if wide and (len(chain) > 2 or not g["variant"]):
            raise UserError(f"network {text!r}: -wide is one grown transfer X7Y+V-wide, not a chain or a plain network")
        return Pattern(text, "grown", chain[0], chain[-1], True, chain=chain, variant=g["variant"], scope=scope,
                       normalize=normalize, wide=wide, n=n)
    match = _CLASSIC_PATTERN.fullmatch(text)
    if not match:
        raise UserError(f"unknown network {text!r}; choose from {PATTERN_CHOICES}")
    g = match.groupdict()
    if g["random"] is not None:
        return Pattern(text, "random_init", target=g["random"])
    if g["src"] is None:
        return Pattern(text, "base", target=g["base"])
    return Pattern(text, "copy", g["src"], g["tgt"], bool(g["plus"]), bool(g["pres"]))
