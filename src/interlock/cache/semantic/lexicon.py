"""Word classes for the semantic-cache guards: general vocabulary, never topic lists.

Every set here names a *linguistic class* (negators, numerals, units, time words,
output formats, programming and natural languages, ...) or a small synonym map of
everyday English. The guards in :mod:`.guard` compare two requests class by class, so
a class only has to be broadly right: a word missing from a list is still compared as
an ordinary content word, which errs on the side of a miss, not of a wrong answer.
"""

from __future__ import annotations


def words(text: str) -> frozenset[str]:
    """A word class written as whitespace-separated words (easier to read and review)."""
    return frozenset(text.split())


# Function words, question words, auxiliaries and the politeness / request wrappers
# people put around a question ("could you please tell me ..."). They never change the
# answer, so they are dropped before content words are compared.
STOPWORDS = words(
    """
    a an the this that these those there here it its it's itself
    i me myself you yourself we ourselves they them themselves
    is are was were be been being am do does did done doing have has had having
    can could would will shall may might must should ought
    what what's whats which who whose when where why how whatever whichever
    to of in on at by for with from into onto about as than then so such
    and or but if because since while although though also too either
    up out over off down again further once just very really actually basically
    simply literally kind sort bit lot lots some any way ways thing things something
    anything stuff question questions answer quick quickly please pls plz kindly
    hi hey hello hiya greetings dear sir madam thanks thank thx ty cheers appreciate
    appreciated appreciation much many so sorry excuse pardon bother
    oh okay ok ah um uh well anyway alright yeah yes
    tell show explain describe give let know help assist wonder wondering wondered
    curious mind remind hope hoping like love want wanted wanting trying try tried
    say said ask asking asked using
    someone somebody anyone anybody people person guys folks
    dumb silly stupid random quickie advance
    one single between behind away whether appear appears seem seems equal equals
    happen happens occur occurs available need needs needed
    calculate compute identify determine recommend suggest provide classify
    categorize categorise translate figure
    whats thats hows wat wut whos wheres im ive youre following
    good great nice correct right
    able possible exactly specific specifically particular particularly
    me my mine our ours your yours us
    """
)
# Words that are stop words *only* as request wrappers but content elsewhere are kept
# out of STOPWORDS on purpose ("list", "sort", "check", "need" ...).

# Lower-case "us" is the pronoun; "US" (capitals) is the country: see guard.normalise.
AMBIGUOUS_US = "us"

NEGATORS = words(
    """
    not no never none nothing nobody nowhere neither nor without cannot except
    excluding unless lack lacking absent avoid avoiding
    """
)

# Quantity/selection words whose change changes the answer ("a file" vs "all files").
QUANTIFIERS = {
    "all": "all",
    "every": "all",
    "each": "all",
    "entire": "all",
    "whole": "all",
    "both": "both",
    "only": "only",
    "solely": "only",
    "several": "several",
    "multiple": "several",
    "few": "few",
    "most": "most",
}

NUMBER_WORDS = {
    "zero": 0,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
    "hundred": 100,
    "thousand": 1000,
    "million": 1_000_000,
    "billion": 1_000_000_000,
    "dozen": 12,
    "half": 0.5,
    "twice": 2,
    "double": 2,
    "triple": 3,
    "quarter": 0.25,
}
# "one"/"a"/"single" are not counted: "a file" and "one file" are the same request, and
# a real change ("one cup" -> "three cups") still shows up as the other number.
ORDINALS = {
    "first": 1,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
}

UNITS = words(
    """
    mm cm m km meter metre kilometer kilometre centimeter centimetre millimeter
    inch inches foot feet ft yard yd mile mi
    mg g gram kg kilogram lb lbs pound oz ounce ton tonne stone
    ml l liter litre gallon quart pint cup tablespoon tbsp teaspoon tsp
    celsius fahrenheit kelvin degree
    second sec minute min hour hr day week month year decade century millennium
    ms millisecond microsecond nanosecond
    byte bit kb mb gb tb kib mib gib kilobyte megabyte gigabyte terabyte
    hz khz mhz ghz watt kw kwh volt amp mph kph
    percent percentage
    dollar usd euro eur pound gbp yen jpy cent cents
    metric imperial
    """
)

TIME_WORDS = words(
    """
    today tomorrow yesterday tonight now currently current latest recent recently
    past future next last ago previous upcoming later earlier soon
    daily weekly monthly yearly annual annually hourly nightly quarterly
    morning afternoon evening night noon midnight weekend weekday
    before after until during since within permanently permanent temporarily
    temporary forever always
    spring summer autumn winter
    january february march april may june july august september october november december
    monday tuesday wednesday thursday friday saturday sunday
    """
)
# "may", "march" and "last" are ambiguous; the guard only counts a month after a number
# or before one (see guard._time_words).
AMBIGUOUS_MONTHS = frozenset({"may", "march"})

COMPARATIVES = words(
    """
    more less fewer most least better best worse worst
    bigger biggest larger largest smaller smallest greater greatest
    higher highest lower lowest longer longest shorter shortest
    faster fastest slower slowest quicker quickest
    cheaper cheapest expensive costlier
    closer closest nearer nearest farther farthest further furthest
    older oldest newer newest younger youngest earlier earliest later latest
    heavier heaviest lighter lightest stronger strongest weaker weakest
    easier easiest harder hardest safer safest riskier riskiest
    hotter hottest colder coldest warmer warmest
    maximum minimum top bottom
    """
)

# Output shape: a change here asks for a different answer even on the same topic.
FORMAT_WORDS = words(
    """
    json yaml yml toml xml csv tsv html markdown md latex sql table tables
    bullet bullets bulleted numbered list outline paragraph paragraphs sentence sentences
    word words line lines essay poem haiku limerick story summary tldr
    example examples detail detailed details brief briefly short
    concise concisely verbose formal formally informal informally casual casually
    simple simply step steps code snippet diagram chart
    reasoning justification
    """
)

PROGRAMMING_LANGUAGES = words(
    """
    python java javascript js typescript ts c cpp c++ c# csharp go golang rust ruby php
    perl swift kotlin scala haskell lua r julia matlab bash sh zsh powershell fish
    sql mysql postgresql postgres sqlite oracle mongodb redis elixir erlang clojure
    dart objective-c fortran cobol assembly groovy f# ocaml zig nim vb vba
    node nodejs node.js deno react vue angular django flask rails spring
    linux windows macos mac ubuntu debian centos android ios
    """
)

NATURAL_LANGUAGES = words(
    """
    english french german spanish italian portuguese dutch russian chinese mandarin
    cantonese japanese korean arabic hindi bengali urdu turkish polish czech slovak
    swedish norwegian danish finnish greek hebrew latin thai vietnamese indonesian
    malay tagalog swahili ukrainian romanian hungarian persian farsi punjabi tamil
    """
)

# "I'm curious" is filler; "I'm vegan" is a constraint on the answer.
MOODS = words(
    """
    curious wondering confused stuck sure unsure new here bored lost trying about going
    so just really not in on at planning thinking looking hoping working struggling
    suspicious worried nervous anxious frustrated annoyed excited scared afraid puzzled
    embarrassed skeptical sceptical desperate impatient glad happy sorry
    """
)

# Personal pronouns of the third person: "how do I ..." vs "how does she ...".
THIRD_PERSON = words("he him his she her hers himself herself")

# Everyday-English synonyms and abbreviations, mapped to one canonical spelling.
SYNONYMS = {
    # editing verbs
    "combine": "merge",
    "join": "merge",
    "concatenate": "merge",
    "delete": "remove",
    "erase": "remove",
    "quit": "exit",
    "leave": "exit",
    "view": "see",
    "display": "see",
    "look": "see",
    "check": "see",
    "create": "make",
    "generate": "make",
    "build": "make",
    "modify": "change",
    "alter": "change",
    "edit": "change",
    "update": "change",
    "begin": "start",
    "launch": "start",
    "finish": "end",
    "terminate": "end",
    "halt": "stop",
    "prevent": "stop",
    "obtain": "get",
    "retrieve": "get",
    "locate": "find",
    "execute": "run",
    "utilize": "use",
    "utilise": "use",
    "require": "need",
    "purchase": "buy",
    "acquire": "buy",
    "repair": "fix",
    "resolve": "fix",
    "send": "make",
    "transmit": "send",
    "insert": "add",
    "setup": "install",
    "calculate": "compute",
    "determine": "find",
    "differentiate": "derivative",
    "average": "mean",
    "causes": "cause",
    "primary": "main",
    "principal": "main",
    "chief": "main",
    "major": "main",
    "frequently": "often",
    "regularly": "often",
    "large": "big",
    "huge": "big",
    "tiny": "small",
    "little": "small",
    "rapid": "fast",
    "speedy": "fast",
    "inexpensive": "cheap",
    "costly": "expensive",
    "pricey": "expensive",
    "cost": "price",
    "fee": "price",
    "autumn": "fall",
    "kid": "child",
    "kids": "child",
    "children": "child",
    "fridge": "refrigerator",
    "movie": "film",
    "auto": "car",
    "automobile": "car",
    "reply": "answer",
    "respond": "answer",
    "response": "answer",
    # irregular verb forms (regular ones are stemmed)
    "used": "use",
    "got": "get",
    "gotten": "get",
    "made": "make",
    "went": "go",
    "gone": "go",
    "saw": "see",
    "seen": "see",
    "ran": "run",
    "wrote": "write",
    "written": "write",
    "spoke": "speak",
    "spoken": "speak",
    "ate": "eat",
    "eaten": "eat",
    "took": "take",
    "taken": "take",
    "gave": "give",
    "given": "give",
    "knew": "know",
    "known": "know",
    "paid": "pay",
    "sold": "sell",
    "bought": "buy",
    "fell": "fall",
    "fallen": "fall",
    "built": "make",
    "sent": "make",
    "found": "find",
    "lost": "lose",
    "began": "start",
    "begun": "start",
    "came": "come",
    "kept": "keep",
    "held": "hold",
    "brought": "bring",
    "thought": "think",
    "taught": "teach",
    "caught": "catch",
    "drove": "drive",
    "driven": "drive",
    "flew": "fly",
    "flown": "fly",
    "grew": "grow",
    "grown": "grow",
    "broke": "break",
    "broken": "break",
    "chose": "choose",
    "chosen": "choose",
    "froze": "freeze",
    "frozen": "freeze",
    "won": "win",
    "met": "meet",
    "led": "lead",
    "slept": "sleep",
    "spent": "spend",
    "stole": "steal",
    "stolen": "steal",
    "sank": "sink",
    "sunk": "sink",
    "drank": "drink",
    "drunk": "drink",
    "swam": "swim",
    "threw": "throw",
    "thrown": "throw",
    "wore": "wear",
    "worn": "wear",
    "understood": "understand",
    # abbreviations and spellings
    "dict": "dictionary",
    "dicts": "dictionary",
    "dir": "directory",
    "folder": "directory",
    "app": "application",
    "apps": "application",
    "repo": "repository",
    "config": "configuration",
    "db": "database",
    "func": "function",
    "fn": "function",
    "arg": "argument",
    "args": "argument",
    "param": "parameter",
    "params": "parameter",
    "var": "variable",
    "vars": "variable",
    "doc": "documentation",
    "docs": "documentation",
    "info": "information",
    "pic": "picture",
    "photo": "picture",
    "img": "image",
    "msg": "message",
    "e-mail": "email",
    "mail": "email",
    "temp": "temperature",
    "min": "minute",
    "mins": "minute",
    "hr": "hour",
    "hrs": "hour",
    "sec": "second",
    "secs": "second",
    "yr": "year",
    "yrs": "year",
    "wk": "week",
    "km": "kilometer",
    "kilometre": "kilometer",
    "kms": "kilometer",
    "cm": "centimeter",
    "centimetre": "centimeter",
    "mm": "millimeter",
    "millimetre": "millimeter",
    "metre": "meter",
    "kg": "kilogram",
    "kgs": "kilogram",
    "lb": "pound",
    "lbs": "pound",
    "oz": "ounce",
    "ft": "foot",
    "feet": "foot",
    "litre": "liter",
    "ml": "milliliter",
    "millilitre": "milliliter",
    "tbsp": "tablespoon",
    "tsp": "teaspoon",
    "mi": "mile",
    "deg": "degree",
    "pct": "percent",
    "percentage": "percent",
    "approx": "approximately",
    "u": "you",
    "q": "question",
    "ur": "your",
    "b4": "before",
    "till": "until",
    "til": "until",
    "tmrw": "tomorrow",
    "tmr": "tomorrow",
    "w/o": "without",
    "js": "javascript",
    "ts": "typescript",
    "py": "python",
    "golang": "go",
    "postgres": "postgresql",
    "difference": "differ",
    "differences": "differ",
    "different": "differ",
    "compare": "differ",
    "compared": "differ",
    "comparing": "differ",
    "distinguish": "differ",
    "reason": "cause",
    "reasons": "cause",
    "why": "cause",
    "nodejs": "node",
    "node.js": "node",
    "k8s": "kubernetes",
    "jan": "january",
    "feb": "february",
    "mar": "march",
    "apr": "april",
    "jun": "june",
    "jul": "july",
    "aug": "august",
    "sep": "september",
    "sept": "september",
    "oct": "october",
    "nov": "november",
    "dec": "december",
    "mon": "monday",
    "tue": "tuesday",
    "tues": "tuesday",
    "wed": "wednesday",
    "thu": "thursday",
    "thurs": "thursday",
    "fri": "friday",
    "sat": "saturday",
    "sun": "sunday",
}

# Multi-word and symbol spellings, rewritten (on lower-cased text) before tokenising.
# Applied in order; an entry is skipped (cheaply) when none of its hints occurs.
PHRASES: tuple[tuple[tuple[str, ...], str, str], ...] = (
    # (substrings one of which must occur: a cheap pre-check, pattern, replacement)
    (("%",), r"(\d)\s*%", r"\1 percent"),
    (("cent",), r"\bper\s*cent\b", "percent"),
    (
        ("°", "deg"),
        r"°\s*f\b|\bdeg(?:rees?)?\s+f\b|\bdegrees?\s+fahrenheit\b",
        " degree fahrenheit",
    ),
    (("°", "deg"), r"°\s*c\b|\bdeg(?:rees?)?\s+c\b|\bdegrees?\s+celsius\b", " degree celsius"),
    (("root",), r"\bsquare\s+root\b", "sqrt"),
    (("root",), r"\bcube\s+root\b", "cbrt"),
    (("united", "u.s."), r"\bunited\s+states(?:\s+of\s+america)?\b|\bu\.s\.(?:a\.)?", " usa "),
    (("united", "u.k."), r"\bunited\s+kingdom\b|\bu\.k\.", " uk "),
    (("number",), r"\bwhat\s+is\s+the\s+number\s+of\b", "how many"),
    (("number",), r"\bthe\s+number\s+of\b", "how many"),
    (("fall",), r"\bin\s+the\s+fall\b", "in autumn"),
    (("come",), r"\bhow\s+come\b", "why"),
    (("of",), r"\bkind\s+of\b|\bsort\s+of\b|\ba\s+lot\s+of\b|\blots\s+of\b", " "),
    (("least",), r"\bat\s+least\b", " minimum "),
    (("most", "more"), r"\bat\s+most\b|\bno\s+more\s+than\b", " maximum "),
    (("up",), r"\bup\s+to\s+(\d)", r" maximum \1"),
    (("mind",), r"\bif\s+you\s+(?:do\s+not|don['’]?t)\s+mind\b", " "),
    (("oh",), r"\boh,?\s+no\b", " oh "),
    (("recent", "latest"), r"\bmost\s+recent\b|\blatest\b", " last "),
    (("least",), r"\bleast\s+expensive\b", " cheapest "),
    (("most",), r"\bmost\s+expensive\b", " priciest "),
    (("all",), r"\bof\s+all\s+(?:the\s+)?", " of the "),
    (
        ("walk", "figure", "bunch", "advance"),
        r"\bwalk\s+me\s+through\b|\bfigure\s+out\b|\ba\s+bunch\b|\bin\s+advance\b",
        " ",
    ),
    (("whom",), r"\bby\s+whom\b", " who "),
    (("what",), r"\b(?:in\s+)?what\s+(?:year|date)\b", " when "),
    (("e-mail",), r"\be-mail\b", "email"),
    (
        ("loop", "statement", "block", "clause"),
        r"\b(for|while|if|do|switch|foreach|case|try)[\s-]+(loop|statement|block|clause)",
        r"\1\2",
    ),
    (("good",), r"\bgood\s+(?:morning|afternoon|evening|day)\s*([!,.])", r" hello\1"),
    (("'m", "’m"), r"\bi['’]m\b", "i am"),
    (("'re", "’re"), r"\bwe['’]re\b", "we are"),
    (("can",), r"\bcan\s*not\b|\bcan't\b", "can not"),
    (("won't",), r"\bwon't\b", "will not"),
    (("shan't",), r"\bshan't\b", "shall not"),
    (("n't", "n’t"), r"n['’]t\b", " not"),
    (
        ("nt",),
        r"\b(?:dont|doesnt|didnt|isnt|arent|wasnt|werent|wont|cant|couldnt|shouldnt|wouldnt|havent|hasnt)\b",
        " not ",
    ),
    (("order",), r"\bin\s+order\s+to\b", "to"),
    (("liner",), r"\bone-liner\b", "oneliner"),
    (("step",), r"\bstep[\s-]+by[\s-]+step\b", "stepwise"),
    (("set",), r"\bset\s+up\b", "install"),
    (("rid",), r"\bget\s+rid\s+of\b|\bget\s+ride\s+of\b", "remove"),
)

SYMMETRIC_CONNECTORS = frozenset({"and", "or", "vs", "versus", "nor", "&", ","})
# Words that put two things in a directed relation: swapping their sides changes it.
RELATIONS = frozenset({"to", "from", "into", "than", "for", "onto", "over", "like"})
