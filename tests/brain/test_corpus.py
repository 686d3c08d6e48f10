
import pytest

from breachlab.brain.corpus import SCAM_TYPES, corpus_from_dict, dump_corpus, import_sms_spam, load_corpus, seed_corpus
from breachlab.errors import UserError

POST3 = {
    "legitimate": "Your package has been shipped. Expected delivery: Thursday.",
    "phishing": "URGENT: Your Amazon account has been compromised. Verify your identity immediately "
                "or your account will be permanently locked.",
    "investment": "Exclusive crypto opportunity — 500% returns guaranteed in 30 days. "
                  "Only 12 spots remaining. Act now.",
    "fake_shop": "FLASH SALE: 90% OFF authentic Ray-Ban sunglasses! Today only. Free worldwide shipping.",
    "pyramid": "Join our financial freedom network. Earn $5,000/month passive income by helping 3 friends "
               "discover the same opportunity.",
}


def test_seed_has_post3_messages_verbatim_and_variants():
    c = seed_corpus()
    by = c.by_id()
    for typ, text in POST3.items():
        assert by[f"{typ}-en-v0"].text == text
    for typ in ("legitimate", *SCAM_TYPES):
        for lang in ("en", "ja"):
            variants = sorted(m.variant for m in c if m.type == typ and m.language == lang)
            assert variants == [0, 1, 2, 3]
    assert by["phishing-ja-v0"].text.startswith("緊急：")
    assert all(any("\u3040" <= ch <= "\u30ff" for ch in m.text) for m in c if m.language == "ja")


def test_roundtrip_yaml_and_json(tmp_path):
    c = seed_corpus()
    for name in ("c.yaml", "c.json"):
        dump_corpus(c, tmp_path / name)
        assert load_corpus(tmp_path / name) == c


@pytest.mark.parametrize("mutate,msg", [
    (lambda m: m.update(type="lottery"), "type 'lottery'"),
    (lambda m: m.update(language="fr"), "language 'fr'"),
    (lambda m: m.update(presentation="fax"), "presentation 'fax'"),
    (lambda m: m.update(id="bad id/x"), "must be letters"),
    (lambda m: m.pop("text"), "'text' is required"),
    (lambda m: m.update(colour="red"), "unknown key"),
])
def test_validation_errors_name_the_message(mutate, msg):
    raw = seed_corpus().to_dict()
    mutate(raw["messages"][3])
    with pytest.raises(UserError, match="messages\\[3\\]") as exc:
        corpus_from_dict(raw)
    assert msg in str(exc.value)


def test_duplicate_ids_rejected():
    raw = seed_corpus().to_dict()
    raw["messages"][1]["id"] = raw["messages"][0]["id"]
    with pytest.raises(UserError, match="duplicate id"):
        corpus_from_dict(raw)


def test_sms_import_balanced_and_reproducible(need_data):
    a = import_sms_spam(n_per_class=20, seed=1)
    b = import_sms_spam(n_per_class=20, seed=1)
    assert a == b
    assert sum(m.type == "spam" for m in a) == 20 and sum(m.type == "ham" for m in a) == 20
    assert all(m.source.startswith("uci-sms-spam:") for m in a)
    full = import_sms_spam(n_per_class=None)
    assert sum(m.type == "spam" for m in full) == 747 and sum(m.type == "ham" for m in full) == 4827


def test_sms_import_bad_file(tmp_path):
    bad = tmp_path / "x.tsv"
    bad.write_text("spam\tok\nnot-a-label\thello\n", encoding="utf-8")
    with pytest.raises(UserError, match="x.tsv:2"):
        import_sms_spam(bad)
