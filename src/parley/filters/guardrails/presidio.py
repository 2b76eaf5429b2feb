"""`guardrail: presidio`: Microsoft Presidio's pattern recognizers as the PII finder (extra
`parley[presidio]`). Only spans come from Presidio; masking, placeholders and restoring are
parley_pii's (`PiiMasker`, `Vault`).

Nothing is downloaded, ever: the spaCy pipeline is `spacy.blank("en")` (a tokenizer, no model, so
no names or places), Presidio's NER recognizer is left out, and the e-mail recognizer checks
domains against tldextract's bundled Public Suffix List snapshot instead of fetching the list
(Presidio's default tries the network on first use).
"""

from __future__ import annotations

from typing import Any

from parley.config.guardrails import Pattern
from parley.filters.guardrails.pii import Finding, PiiAnalyzer, merge_findings

# Recognizers that need a trained model: left out (a blank pipeline finds nothing with them).
NLP_RECOGNIZERS = frozenset({"SpacyRecognizer", "StanzaRecognizer", "TransformersRecognizer"})


class PresidioAnalyzer:
    """Finds `entities` with Presidio's pattern recognizers, plus the guardrail's own `patterns`."""

    def __init__(self, entities: frozenset[str], patterns: tuple[Pattern, ...], regions: tuple[str, ...]):
        self.entities = entities
        self.engine = _engine(regions)
        self.wanted = sorted(entities & supported(self.engine))
        self.custom = PiiAnalyzer(frozenset(), patterns, regions) if patterns else None

    def analyze(self, text: str) -> list[Finding]:
        found = [
            Finding(r.start, r.end, r.entity_type)
            for r in self.engine.analyze(text=text, language="en", entities=self.wanted)
            if r.end > r.start
        ]
        if self.custom is not None:
            found.extend(self.custom.analyze(text))
        return merge_findings(found)


def supported(engine: Any) -> frozenset[str]:
    return frozenset(e for r in engine.registry.recognizers for e in r.supported_entities)


def _engine(regions: tuple[str, ...]) -> Any:
    """An AnalyzerEngine over a blank spaCy pipeline with offline recognizers."""
    import spacy
    import tldextract
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import EmailRecognizer, PhoneRecognizer

    offline = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return offline(pattern_text.rpartition("@")[2]).fqdn != ""

    nlp = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": "blank"}])
    nlp.nlp = {"en": spacy.blank("en")}  # type: ignore[assignment]  # what load() would set
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp)
    replaced = (EmailRecognizer, PhoneRecognizer)
    registry.recognizers = [
        r
        for r in registry.recognizers
        if type(r).__name__ not in NLP_RECOGNIZERS and not isinstance(r, replaced)
    ]
    registry.add_recognizer(OfflineEmailRecognizer())
    registry.add_recognizer(PhoneRecognizer(supported_regions=list(regions)))
    return AnalyzerEngine(nlp_engine=nlp, registry=registry, supported_languages=["en"])
