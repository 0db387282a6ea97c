"""Which BM25 analyzer a text's words get: its script, and for scripts several languages share, its
language from the short function words it uses. No model, no dependency; a wrong or unsure guess
costs stemming only (the `words` analyzer still finds a document by its own words).

Scripts whose words are not separated by spaces, or whose words the word tokenizers split at combining
marks (Han, kana, Hangul, Thai, Lao, Khmer, Myanmar, Tibetan, and the Brahmic scripts of India and Sri
Lanka except Tamil, which has a stemmer), are cut out of the text as runs (`PIECE_RUN`) and analysed
as the XLM-R pieces of the default model (hsearch/index/analyzers.py); the rest of the text is
detected here.
"""
from __future__ import annotations

import re
from collections import Counter

# Devanagari..Oriya, Telugu..Sinhala, Thai..Tibetan, Myanmar, Hangul Jamo, Khmer, CJK radicals, the
# ideographic iteration marks, kana, Bopomofo, Hangul compatibility jamo, CJK, Hangul syllables,
# compatibility ideographs, half-width kana and Hangul, the supplementary ideographs. ZWJ / ZWNJ
# inside a run belong to it (Indic conjuncts).
_PIECE_CHARS = ("\u0900-\u0b7f\u0c00-\u0dff\u0e00-\u0fff\u1000-\u109f\u1100-\u11ff\u1780-\u17ff\u19e0-\u19ff"
                "\u2e80-\u2fdf\u3005-\u3007\u3040-\u30ff\u3100-\u312f\u3130-\u318f\u31a0-\u31ff\u3400-\u4dbf"
                "\u4e00-\u9fff\ua8e0-\ua8ff\ua960-\ua97f\ua9e0-\ua9ff\uaa60-\uaa7f\uac00-\ud7ff\uf900-\ufaff"
                "\uff66-\uff9f\uffa0-\uffdc\U00020000-\U0003134f")
PIECE_RUN = re.compile(f"[{_PIECE_CHARS}]+(?:[\u200c\u200d][{_PIECE_CHARS}]+)*")

_SCRIPTS = {
    "latin": re.compile("[A-Za-z\u00c0-\u024f\u1e00-\u1eff]"),
    "greek": re.compile("[\u0370-\u03ff\u1f00-\u1fff]"),
    "cyrillic": re.compile("[\u0400-\u052f]"),
    "arabic": re.compile("[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\ufb50-\ufdff\ufe70-\ufeff]"),
    "tamil": re.compile("[\u0b80-\u0bff]"),
}
# letters of Persian / Urdu (and other languages written in Arabic script) that Arabic does not use
_NOT_ARABIC = re.compile("[\u067e\u0686\u0698\u06af\u06a9\u06cc\u0679\u0688\u0691\u06ba\u06be\u06c1\u06d2]")
_WORD = re.compile(r"\w+")

# Frequent function words of each language; a word that k languages of a script list counts 1/k for
# each (`_weights`). The languages without a stemmer are here so that their text is not taken for a
# language with one: they resolve to `words`. Lists and MARGIN were checked on the translated strings
# of this machine's gettext catalogs (/usr/share/locale), never on retrieval data: on such short strings
# the guess is often unsure (then `words`) and seldom wrong.
_FUNCTION_WORDS = {
    "english": "the of and to in is was for that on with as by it are from at be this an which or his her were "
               "has have had not but they their its also been would there who can will",
    "german": "der die das und ist nicht ein eine einen dem den des zu mit sich auf für von im als auch wird "
              "werden wurde sie er es bei nach aus oder kann sind wenn nur noch über zum zur",
    "french": "le la les et des du un une est que qui dans pour pas sur au aux par avec ce cette sont il elle "
              "ont été plus ne se peut être",
    "spanish": "el la los las y de del en que un una es por con para se no su sus al lo como más fue son entre "
               "también pero está este esta sobre hasta desde puede cuando muy sin ya",
    "italian": "il lo la gli le e di del della che è un una per con non sono nel nella al alla da dei delle "
               "anche come più questo questa essere stato può",
    "portuguese": "o a os as e de do da dos das em no na que um uma é com para por não se ao pelo pela mais "
                  "foi são também está este esta pode quando muito sem já",
    "dutch": "de het een en van in is dat op te zijn met voor niet aan er die door ook als bij werd wordt naar "
             "kan deze worden",
    "danish": "og i at det er en den til af på de med som for ikke har var jeg et fra men kan blev også eller "
              "skal vil efter",
    "norwegian": "og i det er en til av på som for med de ikke har var et fra men kan ble også den å eller "
                 "skal vil etter",
    "swedish": "och i att det är en som på av för med den till inte har var ett de om men kan blev också eller "
               "ska vill efter",
    "finnish": "ja on ei se että oli hän ovat mutta myös tai kun joka sen ole jonka ollut niin vain kuin tämä voi",
    "hungarian": "a az és hogy nem is egy van volt meg de ez el már mint csak vagy azt ki majd pedig sem lesz "
                 "nincs lehet",
    "romanian": "și de la în a cu pe că nu din este o un mai care sau fost pentru ai ale lui sunt prin fi poate",
    "turkish": "ve bir bu da de için ile olarak çok daha gibi olan en ne o ama kadar sonra her ise değil veya ki",
    "russian": "и в не на что с по это как к но из у же за от для о так его был была были она он они только "
               "или также может",
    # no stemmer: these resolve to `words`
    "polish": "się nie że jest jak ale są tak przez dla jego oraz być może lub który która do na w z i to",
    "czech": "se na je že do to jako by ve pro ale jsou byl tak které není nebo může být",
    "estonian": "ja on ei see et kui ka ning või mis oma siis kas pole seda ole",
    "indonesian": "yang dan di ini itu dengan untuk dari dalam tidak akan pada juga ke adalah ada oleh karena",
    "vietnamese": "của và các là có được trong cho những với một người không này đã để khi từ đến",
    "catalan": "els amb és més dels pel aquest aquesta però també i de la el les en que per no",
    "bulgarian": "и в на не да се е за от че с са по това като но ще той тя",
    "ukrainian": "і в на не що з у та до це як від але за він вона його є",
    "serbian": "и у је да се на за од са не што као",
}
_CYRILLIC = ("russian", "bulgarian", "ukrainian", "serbian")
# Letters that only some of the languages sharing a script use; each occurrence counts as a word.
_LETTERS = {
    "german": "ß", "spanish": "ñ¿¡", "portuguese": "ãõ", "estonian": "õ", "french": "œ", "romanian": "șțş",
    "turkish": "ığş", "hungarian": "őű", "danish": "æø", "norwegian": "æø", "polish": "łąęśźżń", "czech": "řěů",
    "vietnamese": "ơưđ" + "".join(map(chr, range(0x1EA0, 0x1EFA))), "russian": "ыэё", "ukrainian": "іїєґ",
    "bulgarian": "ъ", "serbian": "ђјљњћџ",
}
_BY_SCRIPT = {"latin": [lang for lang in _FUNCTION_WORDS if lang not in _CYRILLIC],
              "cyrillic": list(_CYRILLIC)}


def _weights(langs: list[str]) -> dict[str, dict[str, float]]:
    """Per language, its cues (function words, letters) weighted 1/k when k languages of its script share one."""
    cues = {lang: set(_FUNCTION_WORDS[lang].split()) | set(_LETTERS.get(lang, "")) for lang in langs}
    shared = Counter(c for lang in langs for c in cues[lang])
    return {lang: {c: 1 / shared[c] for c in cues[lang]} for lang in langs}


_CUES = {script: _weights(langs) for script, langs in _BY_SCRIPT.items()}
_CUE_LETTER = re.compile(f"[{''.join(sorted(set(''.join(_LETTERS.values()))))}]")
STEMMED = ("arabic", "danish", "dutch", "english", "finnish", "french", "german", "greek", "hungarian", "italian",
           "norwegian", "portuguese", "romanian", "russian", "spanish", "swedish", "tamil", "turkish")
# ISO 639-1 codes a document's `lang` may give (region and script subtags are dropped: "pt-BR" -> pt)
CODES = {"ar": "arabic", "da": "danish", "nl": "dutch", "en": "english", "fi": "finnish", "fr": "french",
         "de": "german", "el": "greek", "hu": "hungarian", "it": "italian", "no": "norwegian", "nb": "norwegian",
         "nn": "norwegian", "pt": "portuguese", "ro": "romanian", "ru": "russian", "es": "spanish", "sv": "swedish",
         "ta": "tamil", "tr": "turkish"}
SAMPLE_CHARS = 4000  # a document's language is read from its start
MARGIN = 1.5  # the best language's cues must outweigh the runner-up's by this factor, else `words`


def stemmer_for(lang) -> str | None:
    """The stemmer for a document's declared language ("de", "pt-BR", "german"); `words` for a
    language without one; None when `lang` is not a language tag (then the text decides)."""
    if not isinstance(lang, str) or not re.fullmatch(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]+)*|[A-Za-z]+", lang.strip()):
        return None
    lang = lang.strip().lower()
    if lang in STEMMED:
        return lang
    return CODES.get(re.split(r"[-_]", lang)[0], "words")


def detect(text: str) -> str:
    """The word analyzer for `text` (what remains once the piece-script runs are cut out): a
    stemmer's language name, or `words` when the language has no stemmer or the guess is unsure."""
    sample = text[:SAMPLE_CHARS]
    counts = {script: len(rx.findall(sample)) for script, rx in _SCRIPTS.items()}
    script, n = max(counts.items(), key=lambda kv: kv[1])
    if n == 0:
        return "words"
    if script in ("greek", "tamil"):
        return script
    if script == "arabic":
        return "words" if len(_NOT_ARABIC.findall(sample)) > 0.02 * n else "arabic"
    lower = sample.lower()
    seen = Counter(_WORD.findall(lower)) + Counter(_CUE_LETTER.findall(lower))
    hits = sorted(((sum(w * seen[c] for c, w in cues.items() if c in seen), lang)
                   for lang, cues in _CUES[script].items()), reverse=True)
    (best, lang), (second, _) = hits[0], hits[1]
    if best == 0 or best < MARGIN * second:  # unsure: no stemming rather than the wrong one
        return "words"
    return lang if lang in STEMMED else "words"
