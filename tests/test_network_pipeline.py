"""The network build with real spaCy NER: hand-built corpus, ruler, names, exports, bad input."""

import csv
import json

import networkx as nx
import pytest

from stnlp.common.errors import DataError, UserError
from stnlp.plugins.network.export import read_network, write_exports
from stnlp.plugins.network.job import params_from, run
from stnlp.plugins.network.mentions import MentionFinder, characters_per_text
from stnlp.plugins.network.ner import load_ner
from stnlp.plugins.network.params import NetworkParams
from stnlp.plugins.network.pipeline import build_network
from stnlp.runtime.data import Character, load_characters, load_subtitles
from stnlp.runtime.data.names import CharacterNames
from stnlp.runtime.training import TrainingContext

CHARACTERS = [
    {"character_name": "Mike Wheeler", "description": "The leader of the party."},
    {"character_name": "Dustin Henderson", "description": "The curious one."},
    {"character_name": "Lucas Sinclair", "description": "The sceptic."},
    {"character_name": "Eleven", "description": "A girl with powers."},
    {"character_name": "Max Mayfield", "description": "The new girl."},
    {"character_name": "Will Byers", "description": "The boy who vanished."},
]

# Captions per episode; two sentences share the first caption to exercise sentence splitting.
EPISODES = {
    "S01E01": [
        "Mike Wheeler rode his bike home. Dustin waited at the gate.",
        "Lucas Sinclair and Mike argued about the map.",
        "Nobody said a word.",
        "Eleven stared at the door.",
    ],
    "S02E01": ["Max Mayfield skated past Dustin Henderson.", "Dustin smiled."],
    "S02E02": ["The lab was quiet.", "It was raining all night."],
}
# Window 2, counted by hand from the definition in stnlp.plugins.network.cooccurrence.
EXPECTED_EDGES = {
    ("Dustin Henderson", "Mike Wheeler"): 2,
    ("Lucas Sinclair", "Mike Wheeler"): 1,
    ("Dustin Henderson", "Lucas Sinclair"): 1,
    ("Dustin Henderson", "Max Mayfield"): 2,
}


def write_corpus(root, episodes=EPISODES, characters=CHARACTERS):
    """Write ``subtitles/*.srt`` and ``characters/characters.jsonl`` under ``root``."""
    (root / "subtitles").mkdir(parents=True)
    (root / "characters").mkdir()
    for tag, captions in episodes.items():
        blocks = [
            f"{i}\n00:00:{i:02d},000 --> 00:00:{i:02d},900\n{text}\n"
            for i, text in enumerate(captions, start=1)
        ]
        (root / "subtitles" / f"{tag}.srt").write_text("\n".join(blocks), encoding="utf-8")
    lines = [json.dumps(c) for c in characters]
    (root / "characters" / "characters.jsonl").write_text("\n".join(lines) + "\n")
    return root


def build(root, **params):
    captions = load_subtitles(root / "subtitles").records
    characters = load_characters(root / "characters").records
    return build_network(captions, characters, NetworkParams(**params), progress=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def built(corpus):
    return build(corpus, window=2)


def edge_weights(graph):
    return {tuple(sorted((a, b))): w for a, b, w in graph.edges(data="weight")}


def test_hand_built_corpus_gives_the_exact_edges_and_weights(built):
    graph = built.graph
    assert edge_weights(graph) == EXPECTED_EDGES
    assert sorted(graph) == sorted(
        ["Mike Wheeler", "Dustin Henderson", "Lucas Sinclair", "Eleven", "Max Mayfield"]
    )
    assert graph.nodes["Dustin Henderson"]["mentions"] == 3
    assert graph.nodes["Dustin Henderson"]["seasons"] == {1: 1, 2: 2}
    assert graph.edges["Dustin Henderson", "Max Mayfield"]["seasons"] == {2: 2}
    assert graph.nodes["Dustin Henderson"]["weighted_degree"] == 5
    assert graph.nodes["Eleven"]["degree"] == 0


def test_episode_without_names_is_an_empty_graph_and_a_notice(built):
    assert [e["episode"] for e in built.episodes] == ["S01E01", "S02E01", "S02E02"]
    assert built.episodes[2] == {
        "episode": "S02E02",
        "season": 2,
        "sentences": 2,
        "characters": 0,
        "pairs": 0,
    }
    assert built.notices == ["S02E02: no character named in 2 sentence(s); its graph is empty"]
    metrics = built.metrics()
    assert metrics["empty_episodes"] == 1 and metrics["notices"] == built.notices
    assert metrics["sentences"] == 9 and metrics["edges"] == 4


def test_unknown_names_are_dropped_or_kept_by_hyperparameter():
    names = CharacterNames.from_records(
        [Character("Nancy Wheeler", ""), Character("Jonathan Byers", "")]
    )
    finder = MentionFinder(names, load_ner("en_core_web_sm"))
    sentence = ["Nancy called Jonathan and Barbara Holland."]
    assert characters_per_text(finder.find(sentence)) == [
        frozenset({"Nancy Wheeler", "Jonathan Byers"})
    ]
    kept = characters_per_text(finder.find(sentence, keep_unknown=True))
    assert kept == [frozenset({"Nancy Wheeler", "Jonathan Byers", "Barbara Holland"})]


def test_corrupt_characters_file_is_a_data_error_naming_the_file(tmp_path):
    root = write_corpus(tmp_path)
    bad = root / "characters" / "characters.jsonl"
    bad.write_text('{"character_name": "Mike Wheeler"}\n{"character_name": \n')
    with pytest.raises(DataError, match="characters.jsonl"):
        build(root)
    bad.write_text('{"character_name": "Mike"}\n{"description": "no name"}\n')
    with pytest.raises(DataError, match=r"characters.jsonl:2: field 'character_name'"):
        build(root)


def test_empty_characters_list_is_a_data_error(corpus):
    captions = load_subtitles(corpus / "subtitles").records
    with pytest.raises(DataError, match="chars.jsonl: no characters"):
        build_network(captions, [], source="chars.jsonl", progress=False)


def test_exports_are_readable(built, tmp_path):
    paths = write_exports(built.graph, built.info(NetworkParams(window=2)), tmp_path)
    graphml = nx.read_graphml(paths["graphml"])
    assert {tuple(sorted((a, b))): int(w) for a, b, w in graphml.edges(data="weight")} == (
        EXPECTED_EDGES
    )
    assert graphml.nodes["Dustin Henderson"]["mentions_s2"] == 2
    with paths["csv"].open() as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["source"], r["target"]): int(r["weight"]) for r in rows} == EXPECTED_EDGES
    graph, record = read_network(tmp_path)
    assert edge_weights(graph) == EXPECTED_EDGES
    assert graph.nodes["Dustin Henderson"]["seasons"] == {1: 1, 2: 2}
    assert record["params"]["window"] == 2 and record["notices"] == built.notices


def test_job_entrypoint_writes_the_exports_and_metrics(corpus, tmp_path):
    ctx = TrainingContext.in_directory(
        tmp_path / "run", "run-1", "network-characters", {"window": 2}, data_dir=corpus
    )
    outcome = run(ctx)
    assert sorted(p.name for p in ctx.output_dir.iterdir()) == [
        "edges.csv",
        "network.graphml",
        "network.json",
    ]
    assert outcome.metrics["edges"] == 4 and outcome.metrics["empty_episodes"] == 1
    assert outcome.base_model == "en_core_web_sm"
    assert ctx.read_metrics()[-1]["characters"] == 5
    graph, _ = read_network(ctx.output_dir)
    assert edge_weights(graph) == EXPECTED_EDGES


def test_job_rejects_unknown_or_mistyped_hyperparameters():
    with pytest.raises(UserError, match="unknown hyperparameter.*windw"):
        params_from({"windw": 3})
    with pytest.raises(UserError, match="window='wide' is not a int"):
        params_from({"window": "wide"})
    with pytest.raises(UserError, match="window must be a whole number >= 1, got 0"):
        params_from({"window": 0})
    assert params_from({"keep_unknown": "true", "window": "4"}) == NetworkParams(
        window=4, keep_unknown=True
    )


def test_skipping_sentences_without_name_words_changes_nothing():
    """On the sample subtitles: the prefilter gives what running every sentence would give."""
    from stnlp.plugins.network.corpus import episodes_from_captions
    from stnlp.plugins.network.tab import SAMPLE_DIR

    captions = load_subtitles(SAMPLE_DIR / "subtitles").records
    names = CharacterNames.from_records(load_characters(SAMPLE_DIR / "characters").records)
    finder = MentionFinder(names, load_ner("en_core_web_sm"))
    sentences = [s for e in episodes_from_captions(captions) for s in e.sentences]
    fast = characters_per_text(finder.find(sentences))
    every = characters_per_text(finder.find(sentences, keep_unknown=True))
    assert fast == [frozenset(n for n in found if n in names.names) for found in every]
    assert sum(map(finder.may_name, sentences)) < len(sentences)  # some were skipped
    assert sum(1 for found in fast if found) > 100
