"""In-character quality measures: ROUGE-L and BLEU against published values, and the
"who said this?" judge against the transcripts' own speaker labels."""

from __future__ import annotations

import pytest

from stnlp.plugins.chatbot.judge import SpeakerJudge, speaker_of
from stnlp.plugins.chatbot.quality import bleu, lcs_length, rouge_l, rouge_l_f
from stnlp.runtime.data import SAMPLE_DIR, load_characters, load_transcripts
from stnlp.runtime.data.names import CharacterNames
from tests.test_chatbot_data import ELEVEN_LINES, OTHERS, write_dataset


def test_rouge_l_matches_lins_worked_example():
    """Lin (2004), section 3.1: against "police killed the gunman", S2 "police kill the gunman"
    has ROUGE-L 3/4 and S3 "the gunman kill police" 2/4."""
    reference = "police killed the gunman"
    assert rouge_l_f("police kill the gunman", reference) == pytest.approx(0.75)
    assert rouge_l_f("the gunman kill police", reference) == pytest.approx(0.5)
    assert lcs_length(["a", "b", "c", "d", "e"], ["b", "d", "e", "a"]) == 3
    assert rouge_l(["Friends don't lie!", "Eggos."], ["friends don't lie", "Papa?"]) == 50.0


def test_bleu_is_sacrebleus_corpus_bleu():
    line = "Mornings are for coffee and contemplation, Chief."
    assert bleu([line], [line]) == 100.0
    assert bleu(["nothing alike here at all"], [line]) == 0.0


def test_the_judge_attributes_repeated_lines_to_their_speaker(tmp_path):
    """In this dataset every speaker repeats their own few lines: a judge trained on three
    episodes must name the speaker of the fourth's lines better than always saying the most
    frequent speaker (Eleven, who says every other line) would."""
    root = write_dataset(tmp_path)
    lines = load_transcripts(root / "transcripts").records
    names = CharacterNames.from_records(load_characters(root / "characters").records)
    judge = SpeakerJudge.fit([line for line in lines if line.episode < 4], names, min_lines=2)
    held = [line for line in lines if line.episode == 4]
    said = judge.predict([line.line for line in held])
    right = sum(who == speaker_of(names, line.name) for who, line in zip(said, held, strict=True))
    majority = sum(line.name == "Eleven" for line in held) / len(held)
    assert right / len(held) > majority
    assert judge.score(ELEVEN_LINES, "Eleven") >= 0.9 and judge.score(["", " "], "Eleven") == 0
    assert judge.score(OTHERS["Hopper"], "Eleven") <= 1 / 3


def test_a_left_out_line_is_text_the_judge_never_saw(tmp_path):
    root = write_dataset(tmp_path)
    lines = load_transcripts(root / "transcripts").records
    names = CharacterNames.from_records(load_characters(root / "characters").records)
    kept = SpeakerJudge.fit(lines, names, min_lines=2)
    left_out = SpeakerJudge.fit(lines, names, exclude=["  friends DON'T lie. "], min_lines=2)
    assert kept.classes == left_out.classes
    assert not (kept.weight == left_out.weight).all()  # fitted without that line


def test_on_the_sample_the_judge_beats_chance_on_unseen_episodes():
    lines = load_transcripts(SAMPLE_DIR / "transcripts").records
    names = CharacterNames.from_records(load_characters(SAMPLE_DIR / "characters").records)
    last = max(line.episode for line in lines)
    judge = SpeakerJudge.fit([line for line in lines if line.episode < last], names)
    held = [line for line in lines if line.episode == last and speaker_of(names, line.name)
            in judge.classes]  # fmt: skip
    said = judge.predict([line.line for line in held])
    right = sum(who == speaker_of(names, line.name) for who, line in zip(said, held, strict=True))
    assert right / len(held) > 2 / len(judge.classes)
