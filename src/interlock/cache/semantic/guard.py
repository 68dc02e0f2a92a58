"""Verification guards: may a cached answer to one request be served for another?

An embedding says two requests are *about* the same thing; it cannot see that "404" is
not "403", that "not mutable" flips "mutable", or that "miles to km" runs the other
way. These guards compare what the embedding blurs, class by class, and name the first
difference they find. They are deliberately one-sided: anything they cannot account
for (a content word of one request with no counterpart in the other) is a difference,
because a miss costs one upstream call and a false hit serves a wrong answer.

What is tolerated: stop words and politeness wrappers ("hi, could you please tell
me ..."), casing, typos (one edit in a longer word), inflection, a small map of
everyday synonyms, word order that only moves phrases around, and a narrative preamble
("I'm helping my kid with geometry tonight: ...") set off by punctuation before the
actual request.

Pure Python, no model: each text is analysed once (cached) and two analyses compare in
well under a millisecond. Very long texts are analysed on their head and tail only and
their middles must match exactly.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from . import lexicon as lx

# Past this many characters only the head and tail are analysed (the middle must match).
MAX_CHARS = 1500
_HALF = MAX_CHARS // 2

_SPACE = re.compile(r"\s+")
_PAYLOAD = re.compile(
    r"```(.{1,4000}?)```"  # fenced code
    r'|"([^"\n]{1,1000})"'  # "double"
    r"|“([^”\n]{1,1000})”"  # “curly”
    r"|`([^`\n]{1,500})`"  # `inline code`
    r"|(?<![\w'’])'([^'\n]{1,300})'(?![\w'’])"  # 'single' (not an apostrophe)
    r"|(\{[^{}\n]{1,1000}\})",  # {"json": ...}
    re.DOTALL,
)
_LOOSE = re.compile(r"[^\w]+")
_US = re.compile(r"\bUS\b|\bU\.S\.(?:A\.)?")
_PHRASES = tuple((hints, re.compile(p), r) for hints, p, r in lx.PHRASES)
_THOUSANDS = re.compile(r"(\d),(\d{3})(?!\d)")
_MATH_SPACES = re.compile(r"(\w)\s*([\^/])\s*(\w)")
_CURRENCY = re.compile(r"([$€£¥])\s*(\d)")
_CURRENCY_NAMES = {"$": " dollar ", "€": " euro ", "£": " gbp ", "¥": " yen "}
# Segment boundaries: sentence ends, colons, semicolons, dashes, commas, newlines.
_BOUNDARY = re.compile(
    r"[.!?;:]+(?=\s|$)|\s[—–-]+\s|[—–]|,\s|\n|\(|\)|\sso\s(?!that|far|much|many|long)"
)
_CONTRACTION = re.compile(r"(?<=[a-z])['’](?:s|re|ve|d|ll|m)\b")
_ROMAN = re.compile(r"\b(?:II|III|IV|VI|VII|VIII|IX|XI|XII)\b")
_ROMAN_VALUES = {
    "II": "2",
    "III": "3",
    "IV": "4",
    "VI": "6",
    "VII": "7",
    "VIII": "8",
    "IX": "9",
    "XI": "11",
    "XII": "12",
}
_TOKEN = re.compile(r"[^\W_]+(?:[.'’^/+#][^\W_]+)*[+#]*|&")
_MATH = re.compile(r"[\w.^()]+(?:\s*(?:[=!<>]=|\*\*|[-+*/=<>])\s*[\w.^()]+)+")
_OPERATOR = re.compile(r"[=!<>]=|\*\*|(?<=[\w.)\s])[-+*/=<>](?=[\s\w.(])")
_CAPITAL = re.compile(r"(?<=[\w,] )[A-Z][\w]*(?:\.\w+)*")
_ORDINAL = re.compile(r"^(\d+)(?:st|nd|rd|th)$")
_NUMERIC = re.compile(r"^\d+(?:\.\d+)?$")
_PLURAL_NUMBER = re.compile(r"^(\d+)s$")

_FIRST_PERSON = frozenset(
    {"i", "i'm", "i've", "i'd", "i'll", "my", "me", "we", "we're", "our", "us"}
)
# Question words that ask for different facts; counted where they open a question.
_WH = frozenset({"who", "when", "where"})
_WH_LEAD = frozenset(
    {"me", "tell", "know", "ask", "wondering", "wonder", "and", "or", "but", "so", "in",
     "explain", "remind", "question"}
)  # fmt: skip
# Between two words, these make their order free ("X or Y") or a noun phrase ("X of Y").
_NOT_A_SWAP = lx.SYMMETRIC_CONNECTORS | {"of", "for", "from", "in"}
_ARTICLES = frozenset({"a", "an", "one", "this", "that", "single", "each", "every"})
_META_ENDINGS = frozenset({"question", "one", "query"})


@dataclass(frozen=True, slots=True)
class Tok:
    """One word of a request: its spelling, its comparison key and where it stands."""

    surface: str  # the word as written, lower-cased (capitals are recorded in cls)
    low: str  # lower-cased, abbreviations expanded
    key: str  # stemmed + synonym-mapped: what two requests compare
    seg: int  # segment (clause) index
    stop: bool  # function word / politeness: ignored by the content check
    plural: bool  # a plural ending was stripped
    cls: str  # "", "number", "unit", "date", "time_frame", "negation", ...


@dataclass(frozen=True, slots=True)
class Analysis:
    toks: tuple[Tok, ...]
    payloads: tuple[str, ...]  # quoted / code / JSON spans, whitespace-normalised
    operators: tuple[str, ...]  # arithmetic operators next to digits ("2x + 6")
    loose: str  # lower-case words only, for "does this payload occur there"
    middle: str  # the part of a very long text that is not analysed


def _stem(w: str) -> tuple[str, bool]:
    """A deliberately small stemmer: plural, -ing, -ed, -ly; returns (stem, was_plural)."""
    if len(w) <= 3 or not w.isalpha():
        return w, False
    plural = False
    if w.endswith("ies") and len(w) > 4:
        w, plural = w[:-3] + "y", True
    elif w.endswith(("sses", "ches", "shes", "xes", "zes")):
        w, plural = w[:-2], True
    elif w.endswith("s") and not w.endswith(("ss", "us", "is", "ous")):
        w, plural = w[:-1], True
    if w.endswith("ing") and len(w) > 5:
        w = w[:-3]
    elif w.endswith("ied") and len(w) > 4:
        w = w[:-3] + "y"
    elif (w.endswith("ed") and len(w) > 4) or (w.endswith("ly") and len(w) > 5):
        w = w[:-2]
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiousl":
        w = w[:-1]
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    return w, plural


# The synonym map again, on stems: "updating" finds "update" -> "change".
_STEM_SYNONYMS = {_stem(k)[0]: _stem(v)[0] for k, v in lx.SYNONYMS.items()}
_STEM_STOP = frozenset(_stem(w)[0] for w in lx.STOPWORDS if len(w) > 3)


def _singular(w: str) -> str:
    """The word without a plural ending (for the class lists, which are singular)."""
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


@lru_cache(maxsize=16384)
def _word_info(low: str) -> tuple[str, str, bool, bool]:
    """(canonical word, key, is_stop, plural) of one lower-cased word."""
    canon = lx.SYNONYMS.get(low, low)
    if canon in lx.STOPWORDS:
        return canon, canon, True, False
    base = _singular(canon)
    base = lx.SYNONYMS.get(base, base)
    if base in lx.STOPWORDS:
        return base, base, True, False
    if base in lx.QUANTIFIERS:
        return base, lx.QUANTIFIERS[base], False, False
    key, plural = _stem(canon)
    key = _STEM_SYNONYMS.get(key, key)
    if key in _STEM_STOP or key in lx.STOPWORDS:
        return base, key, True, False
    return base, key, False, plural


def _classify(canon: str, key: str) -> str:
    if canon in lx.NEGATORS or canon == "not":
        return "negation"
    if canon in lx.QUANTIFIERS:
        return "plural"
    if canon in lx.COMPARATIVES:
        return "comparison"
    if canon in lx.UNITS:
        return "unit"
    if canon in lx.TIME_WORDS:
        return "time_frame"
    if canon in lx.NATURAL_LANGUAGES or canon in lx.PROGRAMMING_LANGUAGES:
        return "language"
    if canon in lx.FORMAT_WORDS:
        return "format"
    if canon in lx.THIRD_PERSON:
        return "perspective"
    return ""


def _number(low: str, prev: str) -> str | None:
    """The canonical value of a numeral, number word or ordinal, else None."""
    if _NUMERIC.match(low):
        v = float(low)
        return str(int(v)) if v.is_integer() else str(v)
    m = _ORDINAL.match(low) or _PLURAL_NUMBER.match(low)
    if m:
        return m.group(1)
    if low in lx.NUMBER_WORDS:
        v = float(lx.NUMBER_WORDS[low])
        return str(int(v)) if v.is_integer() else str(v)
    if low in lx.ORDINALS:
        return str(lx.ORDINALS[low])
    if low == "second" and prev == "the":
        return "2"
    return None


def _normalise(text: str) -> str:
    text = _US.sub(" usa ", text)
    text = _ROMAN.sub(lambda m: _ROMAN_VALUES[m.group(0)], text)
    text = _CURRENCY.sub(lambda m: _CURRENCY_NAMES[m.group(1)] + m.group(2), text)
    low = text.lower()
    low = _THOUSANDS.sub(r"\1\2", low)
    low = _MATH_SPACES.sub(r"\1\2\3", low)
    for hints, pattern, repl in _PHRASES:
        for h in hints:
            if h in low:
                low = pattern.sub(repl, low)
                break
    return _CONTRACTION.sub("", low)


@lru_cache(maxsize=32768)
def _word(w: str, after_the: bool) -> tuple[str, str, bool, bool, str]:
    """(canonical, key, is_stop, plural, class) of one lower-cased word, out of context."""
    num = _number(w, "the" if after_the else "")
    if num is not None:
        return w, "#" + num, False, w.endswith("s"), "number"
    canon, key, stop, plural = _word_info(w)
    cls = "" if stop else _classify(canon, key) or _classify(w, w)
    if cls == "time_frame" and (canon[:3] in _MONTHS or canon in _WEEKDAYS):
        cls = "date"
    return canon, key, stop, plural, cls


def _tokens(text: str) -> tuple[Tok, ...]:
    """Tokenise ``text`` into segments; casing is taken from the original spelling."""
    out: list[Tok] = []
    seg = 0
    # Casing: remember which lower-cased words were written capitalised mid-segment.
    capital = {m.group(0).lower() for m in _CAPITAL.finditer(text)}
    low = _normalise(text)
    prev = ""
    for piece in _BOUNDARY.split(low):
        for m in _TOKEN.finditer(piece):
            w = m.group(0).strip("'’")
            if not w:
                continue
            canon, key, stop, plural, cls = _word(w, prev == "the")
            if cls != "number":
                if w == "list" and (not out or out[-1].seg != seg):
                    stop = True  # "List the features ..." is a request verb, not a format
                    cls = ""
                if not cls and not stop and w in capital:
                    cls = "entity"
                if w == "whom":
                    stop, cls, key = False, "role_swap", "whom"
                elif w in _WH and (not out or out[-1].seg != seg or prev in _WH_LEAD):
                    stop, cls, key = False, "question", w  # "when did" vs "where did"
            out.append(Tok(w, canon, key, seg, stop, plural, cls))
            prev = w
        if out and out[-1].seg == seg and out[-1].low in _WH and out[-1].stop:
            last = out[-1]  # "painted by whom?": a question word at the end asks too
            out[-1] = Tok(last.surface, last.low, last.low, seg, False, False, "question")
        seg += 1
    return tuple(out)


_MONTHS = lx.words("jan feb mar apr may jun jul aug sep oct nov dec")  # name prefixes
_WEEKDAYS = lx.words("monday tuesday wednesday thursday friday saturday sunday")


@lru_cache(maxsize=8192)
def analyse(text: str) -> Analysis:
    """Everything the guards need from one request text (cached: a text recurs)."""
    middle = ""
    if len(text) > MAX_CHARS:
        middle = _SPACE.sub(" ", text[_HALF:-_HALF]).strip()
        text = text[:_HALF] + "\n" + text[-_HALF:]
    payloads = tuple(
        _SPACE.sub(" ", next(g for g in m.groups() if g is not None)).strip()
        for m in _PAYLOAD.finditer(text)
    )
    ops: list[str] = []
    for m in _MATH.finditer(text):
        span = m.group(0)
        if any(c.isdigit() for c in span):
            ops.extend(_OPERATOR.findall(span))
            ops.extend(c for c in span if c in "()")
    loose = " " + _LOOSE.sub(" ", text.lower()).strip() + " "
    return Analysis(_tokens(text), payloads, tuple(sorted(ops)), loose, middle)


def _strip_payloads(text: str) -> str:
    return _PAYLOAD.sub(" ", text)


def _edit1(x: str, y: str) -> bool:
    """Damerau-Levenshtein distance <= 1 (typos: raed/read, adress/address)."""
    if x == y:
        return True
    lx_, ly_ = len(x), len(y)
    if abs(lx_ - ly_) > 1:
        return False
    i = 0
    while i < min(lx_, ly_) and x[i] == y[i]:
        i += 1
    if lx_ == ly_:
        return x[i + 1 :] == y[i + 1 :] or (
            i + 1 < lx_ and x[i] == y[i + 1] and x[i + 1] == y[i] and x[i + 2 :] == y[i + 2 :]
        )
    if lx_ > ly_:
        return x[i + 1 :] == y[i:]
    return x[i:] == y[i + 1 :]


def _typo_match(x: Tok, y: Tok) -> bool:
    if x.cls or y.cls or len(x.low) < 4 or len(y.low) < 4 or x.low[0] != y.low[0]:
        return False
    return _edit1(x.surface, y.surface) or _edit1(x.low, y.low) or _edit1(x.key, y.key)


def _content(toks: list[Tok]) -> list[Tok]:
    return [t for t in toks if not t.stop]


def _preamble_segments(side: list[Tok], shared: set[str]) -> set[int]:
    """The leading segments that add nothing the rest of the request lacks, when they
    read as narrative ("I'm helping my kid tonight, ...") or meta ("quick question:").

    A segment may repeat a shared word ("I always forget to drink enough, so: how much
    water should I drink?") as long as that word comes again later. Language, format
    and named-entity words keep a preamble in: "I'm on Windows." is a constraint.
    """
    segs: list[list[Tok]] = []
    for t in side:
        if not segs or segs[-1][0].seg != t.seg:
            segs.append([])
        segs[-1].append(t)
    later: Counter[str] = Counter(t.key for t in side if not t.stop and t.key in shared)
    block: list[list[Tok]] = []
    for seg in segs[:-1]:
        keys = [t.key for t in seg if not t.stop and t.key in shared]
        if any(later[k] <= 1 for k in keys):
            break
        for k in keys:
            later[k] -= 1
        block.append(seg)
    if not block:
        return set()
    toks = [t for seg in block for t in seg]
    content = [t for t in toks if not t.stop]
    if not content:
        return {seg[0].seg for seg in block}
    if any(seg[0].low == "as" for seg in block):  # "as the admin, ...": a role
        return set()
    if any(t.cls in ("language", "entity", "format") for t in content):
        return set()
    if any(_identity(seg) for seg in block):
        return set()
    narrative = any(t.surface in _FIRST_PERSON for t in toks)
    meta = any(seg[-1].low in _META_ENDINGS for seg in block)
    if narrative or meta:
        return {seg[0].seg for seg in block}
    return set()


def _identity(seg: list[Tok]) -> bool:
    """ "I'm vegan", "we are beginners": who asks can change the answer."""
    words = [t.surface for t in seg]
    for i in range(len(words) - 1):
        if words[i] in ("i", "we") and words[i + 1] in ("am", "are"):
            rest = [w for w in words[i + 2 :] if w not in ("a", "an", "the")]
            if rest and len(rest) <= 3 and rest[0] not in lx.MOODS:
                return not rest[0].endswith("ing")
    return False


def _reason_of(t: Tok) -> str:
    if t.cls == "number" or any(c.isdigit() for c in t.low):
        return "number"
    return t.cls or "content"


def _match(a: list[Tok], b: list[Tok]) -> tuple[list[Tok], list[Tok], dict[int, int]]:
    """Content words of ``a`` without a counterpart in ``b`` and vice versa; plus the
    positions of matched pairs (index in a -> index in b) for the order guards."""
    used = [False] * len(b)
    pairs: dict[int, int] = {}
    missing: list[int] = []
    by_key: dict[str, list[int]] = {}
    for j, t in enumerate(b):
        by_key.setdefault(t.key, []).append(j)
    for i, t in enumerate(a):
        for j in by_key.get(t.key, ()):
            if not used[j]:
                used[j] = True
                pairs[i] = j
                break
        else:
            missing.append(i)
    still: list[int] = []
    for i in missing:
        for j, u in enumerate(used):
            if not u and _typo_match(a[i], b[j]):
                used[j] = True
                pairs[i] = j
                break
        else:
            still.append(i)
    # A key matched once may recur ("plan ... plan"): repeats are not differences.
    keys_b = {t.key for t in b}
    keys_a = {t.key for t in a}
    miss = [a[i] for i in still if a[i].key not in keys_b]
    extra = [b[j] for j, u in enumerate(used) if not u and b[j].key not in keys_a]
    return miss, extra, pairs


def _is_us_pronoun(t: Tok, other: list[Tok]) -> bool:
    """ "usa" (written "US") against a lower-case "us" is casing, not a new entity."""
    return t.key == "usa" and any(o.low == lx.AMBIGUOUS_US for o in other)


def _swap(a: list[Tok], b: list[Tok]) -> bool:
    """Role swap: the same words on the two sides of a directed relation trade places
    ("miles to km" / "km to miles", "cats eat dog food" / "dogs eat cat food")."""
    ka = [t.key for t in a if not t.stop or t.low in lx.RELATIONS]
    kb = [t.key for t in b if not t.stop or t.low in lx.RELATIONS]
    # 1. A transposition of two content words with the same words between them.
    if len(ka) == len(kb) and Counter(ka) == Counter(kb) and ka != kb:
        diff = [i for i, (x, y) in enumerate(zip(ka, kb, strict=True)) if x != y]
        if len(diff) == 2:
            i, j = diff
            if ka[i] == kb[j] and ka[j] == kb[i]:
                between = ka[i + 1 : j]
                if j - i > 1 and not all(w in lx.SYMMETRIC_CONNECTORS for w in between):
                    return True
                if j - i == 1 and _near(a, ka[i], ka[j]) and _near(b, ka[j], ka[i]):
                    return True  # "all squares rectangles", "what do pandas eat / eats pandas"
    # 2. The words left and right of a relation word ("than", "to", ...) trade sides.
    for rel in lx.RELATIONS:
        if rel in ka and rel in kb:
            la, ra = _sides(a, rel)
            lb, rb = _sides(b, rel)
            if (la & rb) - lb and (ra & lb) - rb:
                return True
    return False


def _near(toks: list[Tok], x: str, y: str) -> bool:
    """Whether key ``x`` is followed by key ``y`` in one clause with no "of" between
    ("president of the US" / "US president" is the same noun phrase, not a swap)."""
    start = None
    for i, t in enumerate(toks):
        if t.key == x:
            start = i
        elif t.key == y and start is not None:
            between = toks[start + 1 : i]
            return t.seg == toks[start].seg and not any(w.low in _NOT_A_SWAP for w in between)
    return False


def _sides(toks: list[Tok], rel: str) -> tuple[set[str], set[str]]:
    """Content keys in the same segment left and right of the first ``rel``."""
    idx = next(i for i, t in enumerate(toks) if t.low == rel and t.stop)
    seg = toks[idx].seg
    left: set[str] = set()
    for t in reversed(toks[:idx]):
        if t.seg != seg or (t.stop and t.low in lx.RELATIONS):
            break
        if not t.stop:
            left.add(t.key)
    right: set[str] = set()
    for t in toks[idx + 1 :]:
        if t.seg != seg or (t.stop and t.low in lx.RELATIONS):
            break
        if not t.stop:
            right.add(t.key)
    return left, right


def _plural_flip(a: list[Tok], b: list[Tok]) -> bool:
    """ "a Docker image" vs "Docker images": a head noun changes number."""

    def singular_heads(toks: list[Tok]) -> set[str]:
        heads: set[str] = set()
        for i, t in enumerate(toks):
            if t.stop or t.plural or t.cls:
                continue
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            if nxt is not None and not nxt.stop and nxt.seg == t.seg:
                continue  # a modifier ("pancake recipe"), not the head
            before = [p.low for p in toks[max(0, i - 2) : i] if p.seg == t.seg]
            if any(w in _ARTICLES for w in before):
                heads.add(t.key)
        return heads

    def plural_heads(toks: list[Tok]) -> set[str]:
        out: set[str] = set()
        for i, t in enumerate(toks):
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            if t.plural and not t.stop and not (nxt and not nxt.stop and nxt.seg == t.seg):
                out.add(t.key)
        return out

    sa, sb = singular_heads(a), singular_heads(b)
    pa, pb = plural_heads(a), plural_heads(b)
    return bool((sa & pb) - pa - sb) or bool((sb & pa) - pb - sa)


def _loose(s: str) -> str:
    return " " + _LOOSE.sub(" ", s.lower()).strip() + " "


def compare(cached: str, query: str) -> str | None:
    """None when ``query`` asks for exactly what ``cached`` asked, else the first
    difference found: "input", "number", "negation", "role_swap", "content", ..."""
    found = diagnose(cached, query)
    return None if found is None else found[0]


def diagnose(cached: str, query: str) -> tuple[str, str] | None:
    """Like :func:`compare`, with the evidence: (reason, the words that differ)."""
    a, b = analyse(cached), analyse(query)
    if a.middle != b.middle:
        return "input", "middle"
    # Quoted payloads: the same instruction on another text is another request.
    strip = False
    if a.payloads or b.payloads:
        pa, pb = Counter(a.payloads), Counter(b.payloads)
        if pa == pb:
            strip = True
        else:
            for p in a.payloads:
                if _loose(p) not in b.loose:
                    return "input", p
            for p in b.payloads:
                if _loose(p) not in a.loose:
                    return "input", p
    if strip:
        a, b = analyse(_strip_payloads(cached)), analyse(_strip_payloads(query))
    if a.operators != b.operators:
        return "number", f"{a.operators} / {b.operators}"
    ta, tb = list(a.toks), list(b.toks)
    # Drop narrative / meta preambles that share nothing with the other request.
    keys_a = {t.key for t in ta if not t.stop}
    keys_b = {t.key for t in tb if not t.stop}
    shared = keys_a & keys_b
    drop_a = _preamble_segments(ta, shared)
    drop_b = _preamble_segments(tb, shared)
    if drop_a:
        ta = [t for t in ta if t.seg not in drop_a]
    if drop_b:
        tb = [t for t in tb if t.seg not in drop_b]
    ca, cb = _content(ta), _content(tb)
    # Class guards first, so the reason names the class.
    for cls in ("number", "negation", "plural", "comparison", "unit", "date", "time_frame"):
        xa = Counter(t.key for t in ca if t.cls == cls)
        xb = Counter(t.key for t in cb if t.cls == cls)
        if cls == "negation":
            if xa != xb:
                return cls, f"{sorted(xa)} / {sorted(xb)}"
        elif set(xa) != set(xb):
            return cls, f"{sorted(xa)} / {sorted(xb)}"
    if (any(t.low == "whom" for t in ta)) != (any(t.low == "whom" for t in tb)):
        return "role_swap", "whom"
    miss, extra, _pairs = _match(ca, cb)
    miss = [t for t in miss if not _is_us_pronoun(t, tb)]
    extra = [t for t in extra if not _is_us_pronoun(t, ta)]
    if miss or extra:
        detail = " ".join(t.surface for t in miss) + " / " + " ".join(t.surface for t in extra)
        return _reason_of((miss or extra)[0]), detail
    if _swap(ta, tb):
        return "role_swap", ""
    if _plural_flip(ta, tb):
        return "plural", ""
    return None
