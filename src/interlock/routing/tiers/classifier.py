"""The feature path: a rule-scored decision between the small, medium and large tiers.

Each rule is a linguistic cue with a weight for one direction: towards the large tier
(proofs, derivations, system design, debugging of concurrency or memory, long-form
analysis, planning under constraints, multi-step word problems) or towards the small
tier (classification and labelling, extraction, format conversion, yes/no and one-word
answers, short lookups). Cues are read from the *instruction* (the last user turn
without its quoted or pasted payload, see :mod:`.features`), so a long passage followed
by "what language is this?" stays small and a one-line proof request goes large.

The decision is deliberately asymmetric. Sending a hard request to a small model is the
quality risk; sending an easy one to a large model only costs money. So:

* any solid large cue wins, even against small cues;
* small needs a solid small cue *and* no cue for larger work (explain, write, why …);
* everything else is medium.

``quality_bias`` (-1 … 1) moves both thresholds: above 0 fewer requests go small and more
go large.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from interlock.routing.tiers.features import Features

__all__ = ["Decision", "FeatureClassifier", "score"]


def _rx(pattern: str) -> re.Pattern[str]:
    # Features hold the instruction, system prompt and earlier turns lowercased already:
    # case-sensitive matching is markedly faster in Python's re.
    return re.compile(pattern)


# ── towards large ──────────────────────────────────────────────────────────────────
_PROOF = _rx(
    r"\bprove\b|\bproofs?\b|\bshow that\b|\bjustify\b|\brigou?rous(ly)?\b|\bderive\b|"
    r"\bderivation\b|\bformally\b|\bfrom first principles\b"
)
_MATH = _rx(
    r"\bprobability\b|\bexpected (number|value)\b|\bhow many (ways|positive|distinct|integers|"
    r"zeros|solutions)\b|\bnumber of ways\b|\bmaximum number\b|\bminimum number\b|"
    r"\bmaximi[sz]e\b|\bminimi[sz]e\b|\boptimal\b|\bintegral\b|\bdifferential\b|"
    r"\brecurrence\b|\bconverge(nce|s)?\b|\bcombinatori|\bgeometric|\bbrownian\b|"
    r"\blinear program(ming)?\b|\bformulate\b|\bhow fast\b|\brate at which\b|[∫∑∏√∞]|\b\d+\s*\^\s*\(|\d+!"
)
_WORD_PROBLEM = _rx(
    r"\bhow (long|much|many|far|fast|old)\b|\bcalculate\b|\bcompute\b|\bwhat (is|will be|are) "
    r"the (total|final|average|break[- ]even|value|amount|balance|probability)\b|\bwhen will\b|"
    r"\bat what\b|\bfind the\b|\bsolve\b|\bdetermine\b|\bwill (it|they|he|she) (meet|overtake|reach)\b"
)
_DESIGN = _rx(
    r"\bdesign (a|an|the|our|my|its|for)\b|\barchitect(ure|ing)?\b|\bdistributed\b|"
    r"\bscal(able|ability|ing (to|strategy))\b|\bfault[- ]toleran|\bconsensus\b|"
    r"\bthread[- ]safe\b|\bconcurren(t|cy)\b|\block[- ]free\b|\binvariants?\b|\bsharding\b|"
    r"\bmicroservices?\b|\bevent[- ]sourc|\bhigh[- ]availability\b|\breplicat(ion|ed)\b|"
    r"\bschema and (a )?(rest )?api\b|\bplugin (system|architecture)\b|\bcrdts?\b|"
    r"\boperational transform"
)
_DEBUG = _rx(
    r"\bdeadlocks?\b|\brace conditions?\b|\bmemory leaks?\b|\bleaks?\b|\bhangs?\b|\bhanging\b|"
    r"\bundefined behaviou?r\b|\broot[- ]cause\b|\bsegfaults?\b|\bout of memory\b|\boom\b|"
    r"\bbottlenecks?\b|\bintermittent(ly)?\b|\bflaky\b|\bre-?render(s|ing)?\b|"
    r"\bfind every\b|\bdiagnos(e|is)\b|\bbehaves differently\b|\bcorrupt(s|ed|ion)?\b|"
    r"\btimeouts? under load\b|\bunder load\b|\bp99\b|\bconntrack\b|\bregress(ion|ed)\b"
)
_LONG_FORM = _rx(
    r"\bessays?\b|\b\d[\d,]{2,}[- ]words?\b|\blong[- ]form\b|\bin[- ]depth\b|"
    r"\bdetailed (analysis|report|plan|comparison|breakdown)\b|\bcomprehensive\b|"
    r"\bcritique\b|\bcritical(ly)?\b|\bwhite ?paper\b|\bthesis\b|\bliterature review\b"
)
_ANALYSIS = _rx(
    r"\banaly[sz]e\b|\banalysis\b|\bevaluate the (likely|impact|effects?|trade)|\bassess\b|"
    r"\btrade[- ]offs?\b|\bimplications\b|\bin terms of\b|\bsecond[- ]order\b"
)
_MULTI_ASK = _rx(
    r"\b(explain|which|how to|how (do|would|should)|what|why|describe|propose|recommend|"
    r"quantify|compare|list)\b"
)
_PLAN = _rx(r"\bplan\b|\bschedule\b|\bitinerary\b|\broadmap\b|\ballocat|\bseating\b|\bbudget\b")
_ALGO = _rx(
    r"\balgorithms?\b|\bcomplexity\b|\bo\([^)]{1,12}\)|\b10\^\d|\bparser\b|\bcompiler\b|"
    r"\binterpreter\b|\btype inference\b|\bwith tests\b|\bcomplete implementation\b|"
    r"\bproduction[- ]ready\b|\bimplement\b.{0,60}\b(algorithm|protocol|engine|scheduler|"
    r"allocator|cache|queue|tree|graph)\b|\bleader election\b|\blog replication\b|"
    r"\bdynamic programming\b|\bamortized\b"
)
_REASONING = _rx(
    r"\bstep[- ]by[- ]step\b|\bwalk me through\b|\bexplain why\b|\bthink through\b|"
    r"\bestimate\b|\bquantify\b|\bfermi\b|\bworst[- ]case\b|\bedge cases\b|"
    r"\bpuzzles?\b|\briddle\b|\bevery label\b|\bcounterfeit\b|\bwhich assumptions\b|"
    r"\bwhat'?s (likely )?going on\b|\bgiven that\b|\bstrategy for\b|\bmodel(ing)? (the|how)\b"
)
_BIG_CODE_ASK = _rx(
    r"\bfix\b|\boptimi[sz]e\b|\brefactor\b|\brewrite\b|\bredesign\b|\breview\b|\bwhy\b|"
    r"\bfind\b|\bspeed up\b|\bmake it\b"
)

# ── towards small ──────────────────────────────────────────────────────────────────
_ANSWER_FORMAT = _rx(
    r"\byes or no\b|\byes/no\b|\btrue or false\b|\b(reply|respond|answer) with (only|just|"
    r"exactly|one|a single|the \w+ only)\b|\b(reply|respond|answer|output|return) only\b|"
    r"\bonly the \w+\b|\bjust the \w+( \w+)?\b|\bone word\b|\bsingle word\b|\bnothing else\b|"
    r"\bno explanation\b|\bwith the \w+ only\b|\bonly\.?$"
)
_CLASSIFY = _rx(
    r"^\W*(classify|categori[sz]e|label|tag)\b|\b(sentiment|spam|intent|topic|category|"
    r"emotion|tone|language) of (this|the|these)\b|\bwhich (category|department|team)\b|"
    r"\bwhat (programming |natural )?language is\b|\bwhich (programming )?language\b|"
    r"\bdetect the language\b|\bis (this|the following) (text |passage |sentence |review )?"
    r"(about|a question|positive|negative|spam|in)\b"
)
_EXTRACT = _rx(
    r"\b(extract|pull out|pick out)\b|\bwhat'?s the (date|order number|email|price|name|"
    r"phone|total|address)\b|\bwhich (company|person|city|country|date)\b.{0,30}\b(appears|"
    r"mentioned)\b|\bmention(s|ed)? any\b"
)
_FORMAT = _rx(
    r"^\W*(now )?(just )?(convert|format|reformat|sort|alphabeti[sz]e|reverse|capitali[sz]e|"
    r"uppercase|lowercase|round|remove|dedupe|de-duplicate|deduplicate|normali[sz]e|"
    r"turn (this|it|these)|put (it|this|these|them)|make (it|this)( sentence)? (more )?"
    r"(polite|formal|shorter)|rewrite in (the )?(passive|active)|fix the (grammar|spelling|"
    r"typo)|correct the (grammar|spelling)|spell|count the|list the|give me the (past|"
    r"plural|synonym)|write (the number|out)|sort)\b|\bin all caps\b|\bnumbered list\b|"
    r"\btitle case\b|\bto json\b|\bas json\b|\bcomma-separated\b|\biso ?8601\b"
)
_LOOKUP = _rx(
    r"\b(synonym|antonym|opposite) (of|for)\b|\bplural of\b|\bpast tense\b|\babbreviation\b|"
    r"\bstand for\b|\bhow (do|would) you spell\b|\bcapital of\b|\bchemical symbol\b|"
    r"\bboiling point\b|\bfreezing point\b|\b(french|spanish|german|italian|portuguese|"
    r"japanese|chinese|dutch|english) (word|for)\b|\bwhat year\b|\bwho (wrote|painted|"
    r"invented|discovered|is|was)\b|\bsquare root of\b|\b\d+ ?% of\b|\bodd one out\b|"
    r"\bwhich is (larger|smaller|heavier|bigger|correct)\b|\bcomplete sentence\b"
)
_SHORT_FACT = _rx(
    r"^\W*(who|which|when (did|was|is|were)|where (is|was|are|did)|how many|how much is|"
    r"how old|what year|what time|(what|what's|what is|what was|what are) (the|a|an) \w+"
    r"( \w+)? (of|for|in|on|from|called)\b|(is|are|was|were|does|did|do|has) (a|an|the|this|"
    r"that|it|\d+)\b)"
)
_FOLLOW_UP = _rx(r"^\W*(and|now|also|ok|okay|thanks|great|perfect)\b[^?]{0,25}\??$|^\W*and \w+\??$")
_SYSTEM_SMALL = _rx(
    r"\bclassif|\blabel\b|\bcategori[sz]|\bsentiment\b|\bintent\b|\bdetect\b|\bidentify the\b|"
    r"\blanguage code\b|\bextract|\breturn (only|json|a json)|\boutput (only|json|a json)|"
    r"\b(reply|respond|answer) (with )?(only|exactly|one|a single|in one)\b|\bone word\b|"
    r"\bsingle word\b|\bjson object\b|\bnormali[sz]e|\bconvert|\breformat|\bcapitali[sz]|"
    r"\bcurrency code\b|\bcapital city\b|\biso\b|\btag (each|the|it)\b|\bflag whether\b|"
    r"\bonly the\b|\bnothing else\b|\bspell|\bformat (the|each|it)|"
    r"\b(output|answer|reply|respond|return)\b[^.\n]{0,40}\bonly\b|\bdetector\b|\bfilter\b|"
    r"\bclassifier\b|\bmoderat|\b(output|answer|reply|respond|return)( with)? \W?\w+( \w+)?\W? or "
    r"\W?\w+\W?\.?$"
)
# Asking for something only a larger model writes well: these cancel small cues.
_MEDIUM_ASK = _rx(
    r"\bexplain\b|\bwhy\b|\bhow (do|does|can|should|would|could|is|are)\b|\bwrite\b|"
    r"\bdraft\b|\bcompose\b|\bsuggest\b|\brecommend|\bideas?\b|\btips\b|\badvice\b|"
    r"\bhelp me\b|\bdescribe\b|\bsummar|\bdifferen|\bcompare\b|\bpros and cons\b|"
    r"\bwhat should\b|\bwhat (can|could) i\b|\boptions\b|\bcauses?\b|\bwork\b|\bmean(s|ing)?\b|"
    r"\bhistory\b|\bimprove\b|\bbetter\b|\bexamples?\b|\bstory\b|\bpoem\b|\bemail\b|"
    r"\bwhat about\b|\bshould\b|\bwould i\b|\bchoose\b|\bbest\b|\bgood\b"
)
_SMALL_CONTEXT = re.compile(
    "|".join(p.pattern for p in (_ANSWER_FORMAT, _CLASSIFY, _EXTRACT)), re.MULTILINE
)


@dataclass(frozen=True, slots=True)
class Decision:
    """A tier with the cues that decided it (``reason`` is safe for an HTTP header)."""

    tier: str  # small | medium | large
    reason: str
    large: float
    small: float


Rule = tuple[str, float, Callable[[Features], bool]]


def _on(pattern: re.Pattern[str]) -> Callable[[Features], bool]:
    return lambda f: pattern.search(f.instruction) is not None


def _payload_only(f: Features) -> bool:
    """A classifier-style system prompt: the user turn is data to label, not a task."""
    return bool(f.system) and _SYSTEM_SMALL.search(f.system) is not None


_LARGE_RULES: list[Rule] = [
    ("proof", 3.0, _on(_PROOF)),
    ("math", 3.0, _on(_MATH)),
    ("math-notation", 1.0, lambda f: f.math >= 2),
    (
        "word-problem",
        3.0,
        lambda f: (
            f.numbers >= 3
            and f.words >= 25
            and (f.question or _WORD_PROBLEM.search(f.instruction) is not None)
        ),
    ),
    ("design", 3.0, _on(_DESIGN)),
    ("debugging", 3.0, _on(_DEBUG)),
    ("long-form", 3.0, _on(_LONG_FORM)),
    ("analysis", 2.0, _on(_ANALYSIS)),
    ("multi-part", 1.5, lambda f: len(_MULTI_ASK.findall(f.instruction)) >= 3),
    ("algorithm", 3.0, _on(_ALGO)),
    ("reasoning", 1.5, _on(_REASONING)),
    (
        "planning-with-constraints",
        3.0,
        lambda f: _PLAN.search(f.instruction) is not None and (f.numbers + f.constraints) >= 4,
    ),
    ("many-constraints", 1.5, lambda f: f.constraints >= 4),
    ("many-numbers", 1.0, lambda f: f.numbers >= 6),
    ("long-instruction", 1.5, lambda f: f.instruction_chars >= 220 and not _payload_only(f)),
    ("very-long-instruction", 1.5, lambda f: f.instruction_chars >= 400 and not _payload_only(f)),
    ("many-sentences", 1.5, lambda f: f.sentences >= 5 and not _payload_only(f)),
    (
        "code-review",
        2.0,
        lambda f: (
            f.code and f.payload_chars >= 350 and _BIG_CODE_ASK.search(f.instruction) is not None
        ),
    ),
]

_SMALL_RULES: list[Rule] = [
    ("answer-format", 3.0, _on(_ANSWER_FORMAT)),
    ("classify", 3.0, _on(_CLASSIFY)),
    ("extract", 3.0, _on(_EXTRACT)),
    ("format", 3.0, _on(_FORMAT)),
    ("lookup", 3.0, _on(_LOOKUP)),
    ("short-fact", 2.5, lambda f: f.words <= 12 and _SHORT_FACT.search(f.instruction) is not None),
    ("very-short", 1.0, lambda f: f.words <= 10),
    (
        "small-session",
        2.0,
        lambda f: f.words <= 8 and f.earlier != "" and _SMALL_CONTEXT.search(f.earlier) is not None,
    ),
    (
        "follow-up",
        1.0,
        lambda f: f.turns >= 3 and f.words <= 6 and _FOLLOW_UP.search(f.instruction) is not None,
    ),
    (
        "classifier-prompt",
        3.0,
        lambda f: bool(f.system) and _SYSTEM_SMALL.search(f.system) is not None,
    ),
]


_CONTEXT_RULES: list[Rule] = [
    ("proof", 3.0, _on(_PROOF)),
    ("math", 3.0, _on(_MATH)),
    ("design", 3.0, _on(_DESIGN)),
    ("debugging", 3.0, _on(_DEBUG)),
    ("long-form", 3.0, _on(_LONG_FORM)),
    ("analysis", 2.0, _on(_ANALYSIS)),
    ("algorithm", 3.0, _on(_ALGO)),
]


def _points(rules: list[Rule], f: Features) -> tuple[float, list[str]]:
    total, hits = 0.0, []
    for name, weight, test in rules:
        if test(f):
            total += weight
            hits.append(name)
    return total, hits


def score(f: Features) -> tuple[float, list[str], float, list[str], bool]:
    """(large points, large cues, small points, small cues, asks for more than a lookup)."""
    large, large_hits = _points(_LARGE_RULES, f)
    if f.earlier:
        # A follow-up inherits half the weight of the task it continues.
        before, before_hits = _points(_CONTEXT_RULES, replace(f, instruction=f.earlier[:1500]))
        if before:
            large += before / 2
            large_hits.extend("context-" + h for h in before_hits)
    small, small_hits = _points(_SMALL_RULES, f)
    if f.code and f.payload_chars >= 200 and "classify" not in small_hits:
        small -= 2.0  # code to read: small models misread it unless only asked to name it
    if f.tools:
        small -= 1.0  # choosing and filling a tool call is not a one-word answer
    medium_ask = _MEDIUM_ASK.search(f.instruction) is not None
    return large, large_hits, small, small_hits, medium_ask


class FeatureClassifier:
    """small / medium / large from :class:`Features`, in a few microseconds."""

    def __init__(self, quality_bias: float = 0.0) -> None:
        # At +1 only requests with several strong small cues stay small and one solid
        # large cue suffices; at -1 a single weak small cue suffices.
        self.large_at = 3.0 - 1.5 * quality_bias
        self.small_at = max(1.0, 3.0 + 4.0 * quality_bias)

    def decide(self, f: Features) -> Decision:
        large, large_hits, small, small_hits, medium_ask = score(f)
        if large >= self.large_at:
            return Decision("large", "large: " + ",".join(large_hits), large, small)
        strong = "answer-format" in small_hits or "classifier-prompt" in small_hits
        if small >= self.small_at and large < 1.5 and (strong or not medium_ask):
            return Decision("small", "small: " + ",".join(small_hits), large, small)
        why = ",".join(large_hits) if large_hits else ("open-ended" if medium_ask else "default")
        return Decision("medium", "medium: " + why, large, small)
