"""Metrics against hand-computed values."""

import pytest

from tasks.metrics import METRICS, normalize_answer, squad_exact_match, squad_f1, standard_error


@pytest.mark.parametrize("raw, expected", [
    ("The Eiffel Tower", "eiffel tower"),  # article and case
    ("an apple, a pear.", "apple pear"),  # articles and punctuation
    ("  New   York\tCity ", "new york city"),  # whitespace
    ("U.S.A.", "usa"),  # punctuation inside a token
    ("theory", "theory"),  # "the" only as a whole word
])
def test_squad_normalization(raw, expected):
    assert normalize_answer(raw) == expected


def test_squad_exact_match_takes_best_gold():
    assert squad_exact_match(["the Denver Broncos"], [["Broncos", "Denver Broncos"]]) == 1.0
    assert squad_exact_match(["Broncos!"], [["Denver Broncos"]]) == 0.0


def test_squad_f1_by_hand():
    # prediction "denver broncos team" vs gold "broncos": precision 1/3, recall 1 -> F1 = 0.5
    assert squad_f1(["Denver Broncos team"], [["Broncos"]]) == pytest.approx(0.5)
    # best of several golds: vs "denver broncos" P=2/3 R=1 -> 0.8
    assert squad_f1(["Denver Broncos team"], [["Broncos", "the Denver Broncos"]]) == pytest.approx(0.8)
    assert squad_f1(["nothing alike"], [["Broncos"]]) == 0.0
    # mean over examples
    assert squad_f1(["a", "Broncos"], [["b"], ["Broncos"]]) == pytest.approx(0.5)


def test_classification_metrics_by_hand():
    pred, gold = [0, 1, 1, 0], [0, 1, 0, 0]
    assert METRICS["accuracy"](pred, gold) == pytest.approx(0.75)
    # class 0: P=1 R=2/3 F1=0.8; class 1: P=1/2 R=1 F1=2/3 -> macro 0.7333
    assert METRICS["macro_f1"](pred, gold) == pytest.approx((0.8 + 2 / 3) / 2)
    # MCC: tp=1 tn=2 fp=1 fn=0 -> (2 - 1*0... ) = (1*2 - 1*0)/sqrt(2*1*3*2) = 2/sqrt(12)
    assert METRICS["mcc"](pred, gold) == pytest.approx(2 / 12 ** 0.5)


def test_rouge_by_hand():
    # unigram overlap: pred "the cat sat" vs gold "the cat ran": P=R=2/3
    assert METRICS["rouge1"](["the cat sat"], [["the cat ran"]]) == pytest.approx(2 / 3)
    assert METRICS["rouge2"](["the cat sat"], [["the cat ran"]]) == pytest.approx(0.5)


def test_rouge_reads_every_script_and_tokenizes_ascii_as_rouge_score_does():
    from rouge_score import tokenizers

    from tasks.metrics import _rouge_tokenizer

    # "你好 世界" vs "你好 朋友": one of two words in common; rouge-score's own tokenizer keeps no word of them
    assert METRICS["rouge1"](["你好 世界"], [["你好 朋友"]]) == pytest.approx(0.5)
    assert METRICS["rouge1"](["café"], [["caf"]]) == 0.0  # "café" was read as "caf"
    text = "Don't re-run it_now: 19th-century CATS were running, weren't they?"
    assert _rouge_tokenizer().tokenize(text) == tokenizers.DefaultTokenizer(use_stemmer=True).tokenize(text)


def test_standard_error_by_hand():
    assert standard_error(0.8, 100) == pytest.approx(0.04)  # sqrt(0.8 * 0.2 / 100)
    assert standard_error(1.0, 10) == 0  # the plain error of a perfect score claims none
    # Agresti-Coull: two successes and two failures added, (10 + 2) / 14 = 6/7 on 14 examples
    assert standard_error(1.0, 10, adjusted=True) == pytest.approx((6 / 7 * 1 / 7 / 14) ** 0.5)
    assert standard_error(1.7, 100) == 0 and standard_error(-0.2, 100) == 0  # another scale: its nearest bound


def test_each_example_s_score_is_the_one_the_metric_averages():
    from tasks.metrics import PER_EXAMPLE, PER_EXAMPLE_MEANS

    assert PER_EXAMPLE["accuracy"]([0, 1, 1, 0], [0, 1, 0, 0]) == [1.0, 1.0, 0.0, 1.0]
    assert PER_EXAMPLE["exact_match"](["the Denver Broncos", "Broncos!"], [["Broncos", "Denver Broncos"],
                                                                          ["Denver Broncos"]]) == [1.0, 0.0]
    # vs "the denver broncos": P=2/3 R=1 -> 0.8; nothing in common -> 0
    assert PER_EXAMPLE["f1"](["Denver Broncos team", "nothing alike"], [["Broncos", "the Denver Broncos"],
                                                                         ["Broncos"]]) == pytest.approx([0.8, 0.0])
    # "the cat sat" vs "the cat ran": P=R=2/3; "a dog" vs the best of "the dog" (1/2) and "a dog barked" (0.8)
    assert PER_EXAMPLE["rouge1"](["the cat sat", "a dog"], [["the cat ran"], ["the dog", "a dog barked"]]) == \
        pytest.approx([2 / 3, 0.8])
    assert set(PER_EXAMPLE) == set(PER_EXAMPLE_MEANS) and "macro_f1" not in PER_EXAMPLE  # no mean over examples
